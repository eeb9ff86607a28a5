"""Two DAG runs at once, 8 serve groups of different lengths, 2 nodes: node leases in Postgres are the mutex.

Proven from the lease history and the attempts: no node ever held two servers at once, and every point
of every group was measured.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.airflow.harness import AirflowHome, finish, sim_servers_running, sim_sweep

pytestmark = pytest.mark.e2e
KEY = "leases-bf16-sim-h100-vllm"
SWEEP = sim_sweep(
    KEY, isl=2048, osl=32, nodes=["node-a", "node-b"], sim_yaml="{ time-scale: 10 }",
    points=["{ tp: 1, conc-list: [1] }", "{ tp: 2, conc-list: [2, 8] }", "{ tp: 4, conc-list: [1, 4, 16] }",
            "{ tp: 8, conc-list: [4] }"],
    bench_yaml="{ random-range-ratio: 1.0, prompts-per-conc: 3, warmups-per-conc: 1 }")


def test_no_node_ever_serves_two_groups(tmp_path: Path, pg_url: str) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    homes = [AirflowHome(path=tmp_path / f"airflow{i}", configs=str(sweep), results_url=pg_url,
                         work_dir=tmp_path / "work") for i in range(2)]
    for h in homes:
        h.migrate()
    procs = [h.start(KEY, {"force": True}) for h in homes]  # two runs at once, same nodes
    outs = [finish(p) for p in procs]
    assert [o["state"] for o in outs] == ["success", "success"], outs

    from infersweep.store.db import get_engine
    from infersweep.store.leases import lease_history

    engine = get_engine(pg_url)
    history = lease_history(engine)
    groups = {tuple(h.holder.split("/")[1:3]) for h in history}  # (run_id, group_id)
    assert len(groups) >= 8, f"expected 8 serve groups to hold leases, saw {len(groups)}"
    by_node: dict[str, list] = {}
    for lease in history:
        assert lease.released_at is not None, f"lease never released: {lease}"
        by_node.setdefault(lease.node, []).append((lease.acquired_at, lease.released_at, lease.holder))
    assert set(by_node) == {"node-a", "node-b"}
    for node, spans in by_node.items():
        spans.sort()
        for (a0, a1, ha), (b0, b1, hb) in itertools.pairwise(spans):
            assert a1 <= b0, f"{node} had two servers at once: {ha} until {a1} and {hb} from {b0}"

    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT r.run_id, g.group_id, b.conc, b.status FROM benchmark_results b "
            "JOIN runs r ON r.id = b.run_pk JOIN serve_groups g ON g.id = b.group_pk")).all()
    per_run: dict[str, set] = {}
    for run_id, group_id, conc, status in rows:
        assert status == "ok", (run_id, group_id, conc)
        per_run.setdefault(run_id, set()).add((group_id, conc))
    assert {r["run_id"] for r in outs} == set(per_run)
    for points in per_run.values():
        assert len(points) == 7  # 1 + 2 + 3 + 1 concurrencies over the 4 groups
    assert sim_servers_running(tmp_path / "work") == []
