"""Promises 2, 3 and 6 of docs/reliability.md, proven on one DAG run with three serve groups (dag.test,
results on a fresh Postgres database):

- tp=2: the simulated server dies mid-benchmark (`--die-after-requests 10`, once). The point fails as
  `server_died`, the Airflow retry restarts the server under the same lease and resumes at the first
  unfinished concurrency; the finished point is not measured again.
- tp=4: the server exits at start with vLLM's KV-cache OOM. The group fails at once (try 1 only), the class
  and the log excerpt are stored and the run summary names the class.
- tp=1: the benchmark task fails (transient) right after writing every point; its retry writes nothing new.
Then the same conf is triggered again: every finished point is reused, none is measured or duplicated.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.airflow.harness import sim_servers_running, sim_sweep
from tests.reliability.dagruns import FaultHome, groups_by_tp, rows, server_log_text

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
KEY = "faults-bf16-sim-h100-vllm"
DAY = "2026-12-01T03:00:00+00:00"
SWEEP = sim_sweep(
    KEY, isl=256, osl=32, nodes=["rel-a", "rel-b"], sim_yaml="{ time-scale: 20 }",
    points=["{ tp: 1, conc-list: [1, 2] }", "{ tp: 2, conc-list: [1, 2, 4] }", "{ tp: 4, conc-list: [1] }"],
    bench_yaml="{ random-range-ratio: 1.0, prompts-per-conc: 2, warmups-per-conc: 1 }")
# Requests the tp=2 server finishes: warm-up 4 (at conc 4), conc 1: 1 + 2, conc 2: 2 + 4, conc 4: 4 + 8.
# Dying after 10 kills it during conc 2, after conc 1 was stored.
DIE_AFTER = 10
POINTS = {1: [1, 2], 2: [1, 2, 4], 4: [1]}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory, rel_pg_url: str) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("faults")
    sweep = base / "sweep.yaml"
    sweep.write_text(SWEEP)
    faults = {"tp=2": ["--die-after-requests", str(DIE_AFTER), "--fault-once", str(base / "tp2-died")],
              "tp=4": ["--fail-at-start", "kv-oom"]}
    inject = {"retry_after_write": {"tp": 1, "marker": str(base / "tp1-failed-after-write")}}
    home = FaultHome(path=base / "airflow", configs=str(sweep), results_url=rel_pg_url, work_dir=base / "work",
                     extra_env={"INFERSWEEP_SIM_FAULTS": json.dumps(faults),
                                "INFERSWEEP_TEST_INJECT": json.dumps(inject)})
    home.migrate()
    out = home.run(KEY, {}, logical_date=DAY)
    return {"home": home, "out": out, "base": base}


def _attempts(url: str, run_id: str, task: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT g.tp, a.try_number, a.status, a.failure_kind, a.transient, a.message, a.ended_at "
                     "FROM attempts a JOIN runs r ON r.id = a.run_pk JOIN serve_groups g ON g.id = a.group_pk "
                     "WHERE r.run_id = :r AND a.task_id = :t ORDER BY g.tp, a.try_number", r=run_id, t=task)


def _points(url: str, run_id: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT g.tp, b.conc, b.status, b.failure_kind, b.measured_at, b.reused_from_id "
                     "FROM benchmark_results b JOIN runs r ON r.id = b.run_pk JOIN serve_groups g ON g.id = b.group_pk "
                     "WHERE r.run_id = :r ORDER BY g.tp, b.conc", r=run_id)


def test_server_death_mid_benchmark_resumes_without_remeasuring(faulty: dict[str, Any]) -> None:
    home, out, url = faulty["home"], faulty["out"], faulty["home"].results_url
    run_id = out["run_id"]
    # The stored run is failed only because of the KV-OOM group; both other groups finished every point.
    assert rows(url, "SELECT status FROM runs WHERE run_id = :r", r=run_id) == [{"status": "failed"}]
    groups = groups_by_tp(url, run_id)
    bench = [a for a in _attempts(url, run_id, "serve_group.benchmark") if a["tp"] == 2]
    assert [(a["try_number"], a["status"], a["failure_kind"]) for a in bench] == [
        (1, "failed", "server_died"), (2, "success", None)], bench
    assert bench[0]["transient"] is True and "died during conc 2" in bench[0]["message"]
    died_at = bench[0]["ended_at"]

    points = [p for p in _points(url, run_id) if p["tp"] == 2]
    # Exactly one row per point, all ok now; conc 1 is the row measured before the crash (measured once),
    # concs 2 and 4 were measured by the retry on the fresh server.
    assert [(p["conc"], p["status"]) for p in points] == [(1, "ok"), (2, "ok"), (4, "ok")]
    by_conc = {p["conc"]: p["measured_at"] for p in points}
    assert by_conc[1] < died_at < by_conc[2] < by_conc[4]

    # The dead server's log was kept (it names the crash); the replacement ran clean; teardown stored its log.
    g2 = groups[2]["id"]
    assert f"--die-after-requests {DIE_AFTER} reached" in server_log_text(url, g2, "server-died")
    assert "fault already fired" in server_log_text(url, g2, "server")
    stops = [a for a in _attempts(url, run_id, "serve_group.stop") if a["tp"] == 2]
    assert [(a["try_number"], a["status"]) for a in stops] == [(1, "success")]
    leases = rows(url, "SELECT holder, released_at FROM node_leases")
    assert leases and all(lease["released_at"] is not None for lease in leases), leases
    assert not list((home.work_dir / "servers").glob("*.json"))  # replacement handle cleaned up by teardown
    assert sim_servers_running(home.work_dir) == []

    # Airflow's record: both healthy groups' benchmark tasks succeeded on their second try.
    bench_tis = [t for t in home.task_instances(run_id) if t["task_id"] == "serve_group.benchmark"]
    assert sorted((t["try_number"], t["state"]) for t in bench_tis if t["state"] != "upstream_failed") == [
        (2, "success"), (2, "success")], bench_tis
    # The other healthy group finished every point.
    assert [(p["conc"], p["status"]) for p in _points(url, run_id) if p["tp"] == 1] == [(1, "ok"), (2, "ok")]


def test_kv_cache_oom_fails_fast_with_class_log_and_summary(faulty: dict[str, Any]) -> None:
    home, out, url = faulty["home"], faulty["out"], faulty["home"].results_url
    run_id = out["run_id"]
    serve = [a for a in _attempts(url, run_id, "serve_group.serve") if a["tp"] == 4]
    assert [(a["try_number"], a["status"], a["failure_kind"], a["transient"]) for a in serve] == [
        (1, "failed", "kv_cache_oom", False)], serve
    assert "No available memory for the cache blocks" in serve[0]["message"]
    g4 = groups_by_tp(url, run_id)[4]
    assert g4["status"] == "failed" and g4["failure_kind"] == "kv_cache_oom"
    assert [(p["conc"], p["status"], p["failure_kind"]) for p in _points(url, run_id) if p["tp"] == 4] == [
        (1, "failed", "kv_cache_oom")]
    assert "No available memory for the cache blocks" in server_log_text(url, g4["id"], "server")
    # Airflow agrees: one try, failed, no retry scheduled.
    serve_tis = [t for t in home.task_instances(run_id) if t["task_id"] == "serve_group.serve"]
    assert sorted((t["try_number"], t["state"]) for t in serve_tis) == [(1, "failed"), (1, "success"),
                                                                         (1, "success")], serve_tis
    # The run summary (CLI and demo summary) shows the class; 5 of the 6 planned points are green.
    cli = subprocess.run([str(Path(sys.executable).parent / "infersweep"), "db", "summary", "--dag-id", KEY],
                         env=home.env(), capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert "kv_cache_oom" in cli.stdout and "5/6" in cli.stdout, cli.stdout
    from infersweep.airflow.settings import AirflowSettings
    from infersweep.airflow.summary import render_demo_summary

    with pytest.MonkeyPatch.context() as mp:
        for k, v in home.env().items():
            if k.startswith("INFERSWEEP_"):
                mp.setenv(k, v)
        summary = render_demo_summary([run_id], AirflowSettings.from_env())
    assert "kv_cache_oom" in summary, summary


def test_retry_after_write_and_duplicate_triggers_add_no_rows(faulty: dict[str, Any]) -> None:
    home, out, url = faulty["home"], faulty["out"], faulty["home"].results_url
    run_id = out["run_id"]
    bench = [a for a in _attempts(url, run_id, "serve_group.benchmark") if a["tp"] == 1]
    assert [(a["try_number"], a["status"], a["failure_kind"]) for a in bench] == [
        (1, "failed", "server_not_ready"), (2, "success", None)], bench
    points = [p for p in _points(url, run_id) if p["tp"] == 1]
    # One row per point, both written by try 1 (before it failed) and not measured again by try 2.
    assert [(p["conc"], p["status"]) for p in points] == [(1, "ok"), (2, "ok")]
    assert all(p["measured_at"] < bench[0]["ended_at"] for p in points)

    first = {(p["tp"], p["conc"]): p for p in _points(url, run_id)}
    assert sorted(first) == sorted((tp, c) for tp, cs in POINTS.items() for c in cs)

    # A duplicate trigger with the same conf as a new run: every finished point is reused, none measured.
    dup = home.run(KEY, {}, logical_date=DAY)
    assert dup["run_id"] != run_id
    reused = _points(url, dup["run_id"])
    assert sorted((p["tp"], p["conc"]) for p in reused) == sorted(first)
    assert all(p["reused_from_id"] for p in reused if p["status"] == "ok")
    serves = rows(url, "SELECT g.tp FROM attempts a JOIN runs r ON r.id = a.run_pk JOIN serve_groups g "
                       "ON g.id = a.group_pk WHERE r.run_id = :r AND a.task_id = 'serve_group.serve' "
                       "AND a.status = 'success'", r=dup["run_id"])
    assert serves == [], "a fully measured group must boot no server on a duplicate trigger"
    totals = rows(url, "SELECT r.run_id, count(*) AS n, count(DISTINCT (b.group_pk, b.isl, b.osl, b.conc)) AS d "
                       "FROM benchmark_results b JOIN runs r ON r.id = b.run_pk GROUP BY r.run_id")
    assert sorted((t["n"], t["d"]) for t in totals) == [(6, 6), (6, 6)], totals
    assert sim_servers_running(home.work_dir) == []
