"""Multinode serve groups through dag.test() on the simulated engine (issue 20).

1. A disaggregated Dynamo-SGLang group (1 prefill + 2 decode workers at TP8, a router) runs the whole chain,
   eval included: its nodes are leased all at once, every worker is a real process on its leased "node", and
   the results count every GPU of every pool (InferenceX's PREFILL_GPUS + DECODE_GPUS).
2. Two DAG runs at once on 4 nodes, one of multinode groups (2 and 3 nodes) and one of single-node groups:
   0 overlaps, no deadlock (both runs finish), every group finished, every set taken all or none.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from tests.airflow.harness import AirflowHome, finish, sim_servers_running
from tests.conftest import SHARED

pytestmark = pytest.mark.e2e
MN_KEY = "llama3.1-8b-bf16-sim-h100-dynamo-sglang"
SN_KEY = "llama3.1-8b-bf16-sim-h100-vllm"
NODES = [f"node-{i}" for i in range(1, 5)]
GSM8K = SHARED / "data" / "gsm8k"


def _pool(workers: int, tp: int) -> dict[str, Any]:
    return {"num-worker": workers, "tp": tp, "ep": 1, "dp-attn": False}


def _sweep(points: list[dict[str, Any]], *, single: list[dict[str, Any]] | None = None,
           eval_enabled: bool = False) -> dict[str, Any]:
    common = {"image": "lmsysorg/sglang:v0.5.8.post1", "model": "meta-llama/Llama-3.1-8B-Instruct",
              "model-prefix": "llama3.1-8b", "runner": "sim-h100", "precision": "bf16"}
    entries: dict[str, Any] = {MN_KEY: {
        **common, "framework": "dynamo-sglang", "router": {"name": "dynamo-router", "version": "0.8.1"},
        "kv-p2p-transfer": "nixl", "multinode": True, "disagg": True,
        "scenarios": {"fixed-seq-len": [{"isl": 1024, "osl": 64, "search-space": points}]}}}
    if single:
        entries[SN_KEY] = {**common, "image": "vllm/vllm-openai:v0.11.0", "framework": "vllm", "multinode": False,
                           "scenarios": {"fixed-seq-len": [{"isl": 1024, "osl": 64, "search-space": single}]}}
    evals: dict[str, Any] = {"enabled": False}
    if eval_enabled:
        evals = {"enabled": True, "select": "max-conc", "limit": 4, "data-dir": str(GSM8K)}
    return {
        "sweep": "multinode", "engine": "sim", "schedule": None, "entries": entries,
        "inventory": {"sim-h100": [{"name": n, "gpus": 8, "gpu-memory-gb": 80, "gpu-profile": "h100"} for n in NODES]},
        "eval": evals, "sim": {"time-scale": 20, "accuracy": 1.0},
        "bench": {"prompts-per-conc": 2, "warmups-per-conc": 1},
    }


def _home(tmp_path: Path, sweep: dict[str, Any], results_url: str) -> AirflowHome:
    path = tmp_path / "sweep.yaml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return AirflowHome(path=tmp_path / "airflow", configs=str(path), results_url=results_url, work_dir=tmp_path / "work")


def _json(value: Any) -> Any:
    return value if not isinstance(value, str) else json.loads(value)


def test_a_disaggregated_group_runs_the_whole_chain(tmp_path: Path) -> None:
    if not (GSM8K / "test.jsonl").exists():
        pytest.skip(f"GSM8K data not found at {GSM8K} (the shared/ data folder is absent here)")
    sweep = _sweep([{"conc-list": [1, 4], "prefill": _pool(1, 8), "decode": _pool(2, 8)}], eval_enabled=True)
    home = _home(tmp_path, sweep, f"sqlite:///{tmp_path / 'results.sqlite'}")
    home.migrate()
    result = home.run(MN_KEY)
    assert result["state"] == "success", result
    assert all(state == "success" for state in result["tis"].values()), result["tis"]

    from infersweep.store.db import get_engine
    from infersweep.store.leases import lease_history

    engine = get_engine(home.results_url)
    with engine.connect() as conn:
        points = [dict(r._mapping) for r in conn.execute(text(
            "SELECT b.conc, b.status, b.gpus, b.pools, b.raw, b.tput_per_gpu FROM benchmark_results b "
            "ORDER BY b.conc"))]
        evals = [dict(r._mapping) for r in conn.execute(text("SELECT conc, status, strict, n FROM eval_results"))]
        (group,) = [dict(r._mapping) for r in conn.execute(text("SELECT recipe, pools, node FROM serve_groups"))]
    assert [(p["conc"], p["status"]) for p in points] == [(1, "ok"), (4, "ok")]
    for p in points:
        raw = _json(p["raw"])
        # every GPU of both pools; output per decode GPU, input per prefill GPU (InferenceX's process_result)
        assert p["gpus"] == 24 and raw["infersweep"]["num_prefill_gpu"] == 8 and raw["infersweep"]["num_decode_gpu"] == 16
        ours = raw["infersweep"]
        assert p["tput_per_gpu"] == pytest.approx(raw["total_token_throughput"] / 24)
        # output per decode GPU against total per GPU: (out / 16) / (total / 24), whatever the time scale
        assert ours["output_tput_per_gpu"] / ours["tput_per_gpu"] == pytest.approx(
            raw["output_throughput"] / 16 / (raw["total_token_throughput"] / 24))
        assert [x["role"] for x in _json(p["pools"])] == ["prefill", "decode"]
        assert raw["completed"] == 2 * p["conc"]
    assert [(e["conc"], e["status"], e["n"]) for e in evals] == [(4, "ok", 4)] and evals[0]["strict"] == pytest.approx(1.0)
    # the stored recipe is the whole topology: every worker and the router, each with its own argv
    topology = _json(group["recipe"])
    roles = sorted(c["role"] for c in topology["components"] if c["name"] not in ("etcd", "nats"))
    assert roles == ["decode", "decode", "prefill", "router"]
    assert any("dynamo.sglang" in " ".join(c["recipe"]["argv"]) for c in topology["components"])
    # three nodes leased as one set, all at once, all released
    history = lease_history(engine)
    assert len(history) == 3 and len({h.set_id for h in history}) == 1 and len({h.node for h in history}) == 3
    assert len({h.acquired_at for h in history}) == 1
    assert all(h.released_at is not None for h in history)
    assert sim_servers_running(home.work_dir) == []


def test_multinode_and_single_node_runs_share_four_nodes(tmp_path: Path, module_pg_url: str) -> None:
    sweep = _sweep(
        [{"conc-list": [1, 2], "prefill": _pool(1, 8), "decode": _pool(1, 8)},    # 2 nodes
         {"conc-list": [2], "prefill": _pool(1, 8), "decode": _pool(2, 8)}],      # 3 nodes
        single=[{"tp": 1, "conc-list": [1]}, {"tp": 2, "conc-list": [2]}, {"tp": 4, "conc-list": [1, 2]},
                {"tp": 8, "conc-list": [1]}])
    # A database of its own: the session's shared one would show this test's four nodes to other lease tests.
    pg_url = module_pg_url
    homes = [_home(tmp_path / f"h{i}", sweep, pg_url) for i in range(2)]
    for h in homes:
        h.migrate()
    procs = [homes[0].start(MN_KEY, {"force": True}), homes[1].start(SN_KEY, {"force": True})]
    outs = [finish(p, timeout=1200) for p in procs]
    assert [o["state"] for o in outs] == ["success", "success"], outs

    from infersweep.store.db import get_engine
    from infersweep.store.leases import lease_history

    engine = get_engine(pg_url)
    # the Postgres database is shared by the session's tests: only this test's two DAGs count
    history = [h for h in lease_history(engine) if h.holder.split("/")[0] in (MN_KEY, SN_KEY)]
    by_node: dict[str, list[Any]] = {}
    for lease in history:
        assert lease.released_at is not None, f"lease never released: {lease}"
        by_node.setdefault(lease.node, []).append((lease.acquired_at, lease.released_at, lease.holder))
    assert set(by_node) <= set(NODES)
    for node, spans in by_node.items():
        spans.sort()
        for (a0, a1, ha), (b0, b1, hb) in itertools.pairwise(spans):
            assert a1 <= b0, f"{node} had two servers at once: {ha} until {a1} and {hb} from {b0}"
    # every multinode set was taken whole: 2 or 3 members, acquired in one transaction
    sets: dict[str, list[Any]] = {}
    for lease in history:
        if lease.holder.split("/")[0] == MN_KEY:
            assert lease.set_id, lease
            sets.setdefault(lease.set_id, []).append(lease)
    assert {len(members) for members in sets.values()} == {2, 3}
    assert all(len({m.acquired_at for m in members}) == 1 for members in sets.values())

    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT r.dag_id, g.group_id, b.conc, b.status FROM benchmark_results b "
            "JOIN runs r ON r.id = b.run_pk JOIN serve_groups g ON g.id = b.group_pk")).all()
        queue = conn.execute(text("SELECT count(*) FROM lease_requests WHERE queue_key LIKE :a OR queue_key LIKE :b"),
                             {"a": f"{MN_KEY}/%", "b": f"{SN_KEY}/%"}).scalar_one()
    per_dag: dict[str, set[tuple[str, int]]] = {}
    for dag_id, group_id, conc, status in rows:
        assert status == "ok", (dag_id, group_id, conc)
        per_dag.setdefault(dag_id, set()).add((group_id, conc))
    assert len(per_dag[MN_KEY]) == 3 and len(per_dag[SN_KEY]) == 5
    assert queue == 0, "a finished run left waiting lease requests behind"
    for h in homes:
        assert sim_servers_running(h.work_dir) == []
