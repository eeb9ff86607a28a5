"""Each framework's serve-group chain, green through dag.test() on the simulated engine (issue 17).

Real InferenceX fleet entries (DeepSeek-R1 FP8: SGLang and TensorRT-LLM on H200, ATOM on MI355X, from the
shared 1ef98e3ed fixture) run through download → serve → warmup → benchmark → eval → teardown. The
recipe is each framework's own (SGLang's launch_server flags, trtllm-serve with its LLM-API YAML, ATOM's
openai_server), and the simulator runs it in that framework's flavour (its health semantics, metric names
and chunking), so what the chain meets is what it meets on a GPU node, timing aside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from tests.airflow.harness import AirflowHome, sim_servers_running

pytestmark = pytest.mark.e2e
FIXTURE = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "inferencex"
KEYS = {"sglang": "dsr1-fp8-h200-sglang", "trt": "dsr1-fp8-h200-trt", "atom": "dsr1-fp8-mi355x-atom"}
#: Keys whose scripts run another client: chat requests (DeepSeek-V4 TRT) and a client-side chat template (MTP).
CLIENT_KEYS = {"dsv4-fp4-b200-trt": ("none", True, "none"), "dsr1-fp8-h200-sglang-mtp": ("mtp", False, "tokenizer")}
NODES = {"h200": (141, "h200"), "mi355x": (288, "mi355x"), "b200-dsv4": (180, "b200")}
WANTED = {*KEYS.values(), *CLIENT_KEYS}


def _entries() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("nvidia-master.yaml", "amd-master.yaml"):
        data = yaml.safe_load((FIXTURE / name).read_text())
        out.update({k: v for k, v in data.items() if k in WANTED})
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    if not FIXTURE.is_dir():
        pytest.skip(f"the shared InferenceX fixture is not at {FIXTURE}")
    base = tmp_path_factory.mktemp("frameworks")
    entries = _entries()
    assert set(entries) == WANTED
    runners = {e["runner"] for e in entries.values()}
    sweep = {
        "sweep": "frameworks", "engine": "sim", "schedule": None, "entries": entries,
        "inventory": {r: [{"name": f"{r}-n0", "gpus": 8, "gpu-memory-gb": NODES[r][0], "gpu-profile": NODES[r][1]}]
                      for r in sorted(runners)},
        "eval": {"enabled": True, "select": "max-conc", "limit": 3},
        # DeepSeek-V4 has no simulator profile: R1's (the same MoE family) stands in for every key here.
        "sim": {"time-scale": 50, "accuracy": 1.0, "model-profile": "deepseek-r1"},
        "bench": {"random-range-ratio": 0.8, "prompts-per-conc": 2, "warmups-per-conc": 1},
    }
    path = base / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    h = AirflowHome(path=base / "airflow", configs=str(path), results_url=f"sqlite:///{base / 'results.sqlite'}",
                    work_dir=base / "work")
    h.migrate()
    return h


def _one_group_conf(path: str, key: str, spec_decoding: str = "none") -> dict[str, Any]:
    """Run conf that keeps one serve group (1k1k, its smallest layout) at its lowest concurrency."""
    from infersweep.config.sweep import load_sweep
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand_jobs

    groups = [g for g in group_jobs(expand_jobs(load_sweep([path]), PlanFilters(config_keys=(key,))))
              if g.isl == 1024 and g.osl == 1024 and g.spec_decoding == spec_decoding]
    g = min(groups, key=lambda g: (g.gpus, g.tp, g.ep, g.dp_attn))
    return {"seq_lens": ["1k1k"], "tp": [g.tp], "ep": [g.ep], "dp_attn": "true" if g.dp_attn else "false",
            "concs": [g.concs[0]]}


@pytest.mark.parametrize("framework", sorted(KEYS))
def test_framework_chain_is_green_on_the_simulator(home: AirflowHome, framework: str) -> None:
    key = KEYS[framework]
    conf = _one_group_conf(home.configs, key)
    result = home.run(key, conf)
    assert result["state"] == "success", result
    assert all(state == "success" for state in result["tis"].values()), result["tis"]
    from infersweep.store.db import get_engine

    with get_engine(home.results_url).connect() as conn:
        points = [dict(r._mapping) for r in conn.execute(text(
            "SELECT b.status, b.conc, b.raw, b.engine_version FROM benchmark_results b JOIN runs r ON r.id = b.run_pk "
            "WHERE r.run_id = :r"), {"r": result["run_id"]})]
        groups = [dict(r._mapping) for r in conn.execute(text(
            "SELECT g.recipe FROM serve_groups g JOIN runs r ON r.id = g.run_pk WHERE r.run_id = :r"),
            {"r": result["run_id"]})]
    assert [p["status"] for p in points] == ["ok"] and points[0]["conc"] == conf["concs"][0]
    raw = points[0]["raw"] if isinstance(points[0]["raw"], dict) else json.loads(points[0]["raw"])
    assert raw["completed"] > 0 and raw["total_output_tokens"] > 0
    (group,) = groups
    recipe = group["recipe"] if isinstance(group["recipe"], dict) else json.loads(group["recipe"])
    assert recipe["framework"] == framework
    launcher = {"sglang": "sglang", "trt": "trtllm-serve", "atom": "atom.entrypoints.openai_server"}[framework]
    assert any(launcher in arg for arg in recipe["argv"]), recipe["argv"]
    assert sim_servers_running(home.work_dir) == []


@pytest.mark.parametrize("key", sorted(CLIENT_KEYS))
def test_the_client_inferencex_runs_for_the_key(home: AirflowHome, key: str) -> None:
    """dsv4 TRT keys send chat requests (/v1/chat/completions); MTP keys template the prompt on the client and
    send its ids to /v1/completions; either way the lengths stay exact (the point passes its length check)."""
    spec_decoding, chat, template = CLIENT_KEYS[key]
    result = home.run(key, _one_group_conf(home.configs, key, spec_decoding))
    assert result["state"] == "success", result
    from infersweep.store.db import get_engine

    with get_engine(home.results_url).connect() as conn:
        (raw,) = [r[0] for r in conn.execute(text(
            "SELECT b.raw FROM benchmark_results b JOIN runs r ON r.id = b.run_pk WHERE r.run_id = :r"),
            {"r": result["run_id"]})]
    raw = raw if isinstance(raw, dict) else json.loads(raw)
    config = raw["infersweep"]["config"]
    assert (config["chat"], config["prompt_template"]) == (chat, template)
    assert raw["infersweep"]["endpoint"] == ("/v1/chat/completions" if chat else "/v1/completions")
    assert raw["infersweep"]["passed"] and raw["completed"] > 0
    assert raw["input_lens"] and all(n <= 1024 for n in raw["input_lens"])
