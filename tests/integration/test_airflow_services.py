"""The real thing: Airflow's api-server, scheduler, dag-processor and triggerer (LocalExecutor) on the
machine's Postgres. Trigger over REST v2 with params (token auth), a bad trigger answers 400, a backfill
of three dates benchmarks three images, and results land in the Postgres results DB with their report.
The first (scheduled) run meets an injected KV-cache OOM: its verdict fails the run under the real scheduler,
with the reasons in the DAG run's note (written through the REST API connection), and the report DAG, created
unpaused, runs on the results asset by itself.

The stack is the one shared with the other integration modules (tests/integration/conftest.py): this module's
sweep file and its fault (selector tp=1: only this sweep runs TP 1) are in it from the start."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.airflow.harness import sim_sweep
from tests.integration.airflow_services import SharedAirflow, StackPart

pytestmark = pytest.mark.integration
KEY = "svc-bf16-sim-h100-vllm"
SWEEP = sim_sweep(
    KEY, isl=4096, osl=32, points=["{ tp: 1, conc-list: [1, 2] }"], nodes=["svc-node-0"], schedule="0 3 * * *",
    image_pattern="vllm/vllm-openai:nightly-{{ ds_nodash }}", eval_yaml="{ enabled: true, select: max-conc, limit: 3 }",
    sim_yaml="{ time-scale: 20, accuracy: 1.0 }",
    bench_yaml="{ random-range-ratio: 1.0, prompts-per-conc: 2, warmups-per-conc: 1 }")
# The first simulated TP-1 server of the stack exits at start with vLLM's KV-cache OOM (once: later ones are
# fine). Only this module's sweep runs TP 1 on the shared stack.
AIRFLOW_STACK = StackPart(
    configs={"svc.yaml": SWEEP},
    sim_faults=lambda tmp: {"tp=1": ["--fail-at-start", "kv-oom", "--fault-once", str(tmp / "kv-oom-fired")]})


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _wait_run(client: httpx.Client, run_id: str, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/dags/{KEY}/dagRuns/{run_id}").json()["state"]
        if state in ("success", "failed"):
            return str(state)
        time.sleep(3)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def _wait_dag(client: httpx.Client, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get(f"/dags/{KEY}").status_code == 200:
            return
        time.sleep(2)
    raise AssertionError(f"DAG {KEY} never appeared (dag-processor)")


def test_rest_trigger_backfill_and_results_on_postgres(shared_airflow: SharedAirflow) -> None:
    if not _pg_up():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432")
    stack = shared_airflow.stack()
    with stack.client() as client:
        _wait_dag(client)
        # The verdict writes the run note through the public REST API; workers read this connection from the
        # metadata DB through the execution API.
        password = json.loads((stack.home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        added = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "connections", "add", "infersweep_airflow_api",
             "--conn-json", json.dumps({"conn_type": "http", "host": stack.base_url, "login": "admin",
                                        "password": password})],
            env=stack.env, capture_output=True, text=True, timeout=120)
        assert added.returncode == 0, added.stdout + added.stderr
        # Unauthenticated calls are refused: auth is on.
        assert httpx.get(f"{stack.base_url}/api/v2/dags", timeout=10).status_code == 401
        # Bad params fail the trigger with the message (400), before any run exists.
        runs_before = client.get(f"/dags/{KEY}/dagRuns").json()["total_entries"]
        bad = client.post(f"/dags/{KEY}/dagRuns", json={"logical_date": None, "conf": {"tp": [3]}})
        assert bad.status_code == 400, bad.text
        # The form's multi-select sends "1" for 1, so the enum lists both spellings.
        assert "Invalid input for param tp: 3 is not one of [1, '1']" in bad.json()["detail"], bad.text
        untagged = client.post(f"/dags/{KEY}/dagRuns", json={"logical_date": None, "conf": {"image": "vllm/vllm-openai"}})
        assert untagged.status_code == 400 and "Invalid input for param image" in untagged.json()["detail"]
        assert client.get(f"/dags/{KEY}/dagRuns").json()["total_entries"] == runs_before  # no run was created
        # Unpausing a catchup=False cron DAG creates its latest scheduled run; let it finish first
        # (max_active_runs=1). Its server dies of the injected OOM: the verdict fails the run, with the reasons.
        assert client.patch(f"/dags/{KEY}", json={"is_paused": False}).status_code == 200
        time.sleep(5)
        [scheduled] = client.get(f"/dags/{KEY}/dagRuns").json()["dag_runs"]
        assert _wait_run(client, scheduled["dag_run_id"]) == "failed", stack.logs()
        run = client.get(f"/dags/{KEY}/dagRuns/{scheduled['dag_run_id']}").json()
        assert run["note"] == "infersweep verdict: FAILED\n2 of 2 points failed: kv_cache_oom×2\n0/2 points green", run
        tis = {t["task_id"]: t["state"] for t in client.get(
            f"/dags/{KEY}/dagRuns/{scheduled['dag_run_id']}/taskInstances").json()["task_instances"]}
        assert tis["finalize"] == "success" and tis["verdict"] == "failed", tis
        r = client.post(f"/dags/{KEY}/dagRuns",
                        json={"dag_run_id": "rest_1", "logical_date": None, "conf": {"concs": [2], "force": True}})
        assert r.status_code == 200, r.text
        assert _wait_run(client, "rest_1") == "success", stack.logs()

        # Backfill three past dates: each maps to its own nightly image through the image-tag pattern.
        bf = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "backfill", "create", "--dag-id", KEY,
             "--from-date", "2026-11-01", "--to-date", "2026-11-03T23:59", "--max-active-runs", "1",
             "--dag-run-conf", '{"eval": false, "force": true}'],
            env=stack.env, capture_output=True, text=True, timeout=300)
        assert bf.returncode == 0, bf.stdout + bf.stderr
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            runs = [x for x in client.get(f"/dags/{KEY}/dagRuns", params={"run_type": "backfill"}).json()["dag_runs"]]
            if len(runs) == 3 and all(x["state"] in ("success", "failed") for x in runs):
                break
            time.sleep(5)
        assert sorted(x["state"] for x in runs) == ["success"] * 3, stack.logs()

        engine = create_engine(stack.results_url)
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT r.run_id, r.trigger_kind, r.image_tag, b.conc, b.status FROM benchmark_results b "
                "JOIN runs r ON r.id = b.run_pk WHERE r.dag_id = :d"), {"d": KEY}).all()
        by_run = {}
        for run_id, kind, image, conc, status in rows:
            if run_id == scheduled["dag_run_id"]:  # the OOM run: its points are stored as failed, by class
                assert status == "failed"
                continue
            assert status == "ok"
            by_run.setdefault(run_id, (kind, image, set()))[2].add(conc)
        assert by_run["rest_1"][2] == {2} and by_run["rest_1"][0] == "manual"
        backfilled = {img for kind, img, _ in by_run.values() if kind == "backfill"}
        assert backfilled == {f"vllm/vllm-openai:nightly-2026110{d}" for d in (1, 2, 3)}
        reports = list((stack.work_dir / "reports").rglob("rest_1.html"))
        assert reports and reports[0].stat().st_size > 10_000
        engine.dispose()
        # The report DAG was created unpaused, so the sweeps' results assets started report runs on their own.
        report_dag = client.get("/dags/infersweep_report").json()
        assert report_dag["is_paused"] is False, report_dag
        assert client.get("/dags/infersweep_report/dagRuns").json()["total_entries"] >= 1, stack.logs()
