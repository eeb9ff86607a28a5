"""A sweep through Airflow end to end (dag.test) on the simulated engine: the chain, the store, reuse,
dry runs and image backfills. Marked e2e: each run is a real DAG run with real servers and clients."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from tests.airflow.harness import AirflowHome, sim_servers_running, sim_sweep

pytestmark = pytest.mark.e2e
KEY = "tiny-bf16-sim-h100-vllm"

SWEEP = sim_sweep(
    KEY, isl=4096, osl=64, points=["{ tp: 1, conc-list: [1, 4] }", "{ tp: 2, pp: 2, dcp-size: 2, conc-list: [2] }"],
    nodes=["n0", "n1"],
    schedule="0 3 * * *", image_pattern="vllm/vllm-openai:nightly-{{ ds_nodash }}",
    eval_yaml="{ enabled: true, select: max-conc, limit: 5 }", sim_yaml="{ time-scale: 20, accuracy: 1.0 }",
    bench_yaml="{ random-range-ratio: 0.8, prompts-per-conc: 4, warmups-per-conc: 1 }")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    base = tmp_path_factory.mktemp("e2e")
    sweep = base / "sweep.yaml"
    sweep.write_text(SWEEP)
    h = AirflowHome(path=base / "airflow", configs=str(sweep), results_url=f"sqlite:///{base / 'results.sqlite'}",
                    work_dir=base / "work")
    h.migrate()
    return h


def _db(home: AirflowHome):
    from infersweep.store.db import get_engine

    return get_engine(home.results_url)


def _rows(home: AirflowHome, sql: str, **params) -> list[dict]:
    with _db(home).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def test_full_chain_then_reuse_boots_no_server(home: AirflowHome) -> None:
    first = home.run(KEY, {})
    assert first["state"] == "success", first
    points = _rows(home, "SELECT b.conc, b.status, b.engine, b.raw, b.recipe_fingerprint, b.config_key, b.image, "
                         "b.engine_version, b.tput_per_gpu, b.tp, b.pp, b.dcp_size, b.pcp_size, b.gpus "
                         "FROM benchmark_results b JOIN runs r ON r.id = b.run_pk WHERE r.run_id = :r", r=first["run_id"])
    assert sorted(p["conc"] for p in points) == [1, 2, 4]
    # The TP2-PP2-DCP2 layout ran on the simulator (4 GPUs) and is stored whole.
    assert {(p["tp"], p["pp"], p["dcp_size"], p["pcp_size"], p["gpus"]) for p in points} == {(1, 1, 1, 1, 1),
                                                                                           (2, 2, 2, 1, 4)}
    for p in points:
        assert p["status"] == "ok" and p["engine"] == "sim" and p["tput_per_gpu"] > 0
        raw = p["raw"] if isinstance(p["raw"], dict) else json.loads(p["raw"])
        # Traceability: fingerprint, image, engine version, config key and the raw client JSON.
        assert p["recipe_fingerprint"] and p["config_key"] == KEY and p["engine_version"].startswith("sim")
        assert raw["infersweep"]["time_scale"] == 20.0 and raw["infersweep"]["passed"] is True
        # Exact lengths: server usage matched every request's intended length (range ratio 0.8 → [51, 64]).
        assert raw["infersweep"]["length_check"]["violations"] == 0
        assert all(51 <= n <= 64 for n in raw["output_lens"]) and len(set(raw["output_lens"])) > 1
    evals = _rows(home, "SELECT e.conc, e.n, e.strict, e.passed FROM eval_results e JOIN runs r ON r.id = e.run_pk "
                        "WHERE r.run_id = :r", r=first["run_id"])
    assert sorted((e["conc"], e["n"], e["strict"], bool(e["passed"])) for e in evals) == [(2, 5, 1.0, True), (4, 5, 1.0, True)]
    logs = _rows(home, "SELECT s.source, count(*) AS n FROM server_logs s JOIN runs r ON r.id = s.run_pk "
                       "WHERE r.run_id = :r GROUP BY s.source", r=first["run_id"])
    assert {(row["source"], row["n"]) for row in logs} == {("server", 2), ("gpu-telemetry", 2)}
    energy = [(p["raw"] if isinstance(p["raw"], dict) else json.loads(p["raw"]))["infersweep"]["energy"]
              for p in points]
    # The sim's modelled power is sampled (labelled simulated); short windows may be null *with a reason*.
    assert all(e["simulated"] or e["reason"] for e in energy)
    assert all((e["joules_per_token"] is None) == (e["reason"] is not None) for e in energy)
    # Each point keeps its window's readings as InferenceX's gpu_metrics.csv (wall clock, like the window).
    assert all(e["gpu_metrics_csv"].startswith("timestamp,index,power.draw [W],") for e in energy)
    assert all(e["start_unix"] == (p["raw"] if isinstance(p["raw"], dict) else json.loads(p["raw"]))[
        "benchmark_start_time_unix"] for e, p in zip(energy, points, strict=True))
    assert (home.work_dir / "reports").exists() and list((home.work_dir / "reports").rglob("*.html"))
    assert sim_servers_running(home.work_dir) == []
    leases = _rows(home, "SELECT released_at FROM node_leases")
    assert leases and all(lease["released_at"] is not None for lease in leases)

    second = home.run(KEY, {})
    assert second["state"] == "success", second
    serves = _rows(home, "SELECT count(*) AS n FROM attempts a JOIN runs r ON r.id = a.run_pk "
                         "WHERE r.run_id = :r AND a.task_id = 'serve_group.serve'", r=second["run_id"])
    assert serves[0]["n"] == 0, "a fully measured sweep must boot zero servers on its second run"
    reused = _rows(home, "SELECT b.conc, b.reused_from_id FROM benchmark_results b JOIN runs r ON r.id = b.run_pk "
                         "WHERE r.run_id = :r", r=second["run_id"])
    assert sorted(p["conc"] for p in reused) == [1, 2, 4] and all(p["reused_from_id"] for p in reused)


def test_dry_run_starts_nothing(home: AirflowHome) -> None:
    before = _rows(home, "SELECT count(*) AS n FROM node_leases")[0]["n"]
    out = home.run(KEY, {"dry_run": True, "force": True})
    assert out["state"] == "success", out
    assert _rows(home, "SELECT count(*) AS n FROM node_leases")[0]["n"] == before
    run = _rows(home, "SELECT status FROM runs WHERE run_id = :r", r=out["run_id"])
    assert run == [{"status": "dry_run"}]


def test_backfill_dates_map_to_distinct_images(home: AirflowHome) -> None:
    # Three logical dates (as `airflow backfill create` would create them) → three nightly images.
    run_ids = []
    for day in ("2026-11-01T03:00:00+00:00", "2026-11-02T03:00:00+00:00", "2026-11-03T03:00:00+00:00"):
        out = home.run(KEY, {"tp": [2], "eval": False}, logical_date=day)
        assert out["state"] == "success", out
        run_ids.append(out["run_id"])
    rows = _rows(home, "SELECT r.run_id, r.image_tag, b.image FROM runs r JOIN benchmark_results b ON b.run_pk = r.id")
    tags = {r["run_id"]: r["image_tag"] for r in rows if r["run_id"] in run_ids}
    assert sorted(tags.values()) == [f"vllm/vllm-openai:nightly-2026110{d}" for d in (1, 2, 3)]
    assert {r["image"] for r in rows if r["run_id"] in run_ids} == set(tags.values())
