"""Fleet routing: with INFERSWEEP_CELERY_QUEUES=1 every node-touching task of a sweep DAG carries its runner
label as Celery queue, and a real Celery worker on the machine's Redis consuming that queue (and only it)
receives exactly those tasks; planning and finalizing go to the default queue's worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import stop_process_groups

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NODE_TASKS = {"serve_group.serve", "serve_group.warmup", "serve_group.benchmark", "serve_group.evaluate"}


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


def _dag_queues(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("INFERSWEEP_CELERY_QUEUES", "1")
    from infersweep.airflow.factory import build_dags
    from infersweep.airflow.settings import AirflowSettings
    from infersweep.config.sweep import load_sweep

    dags = build_dags(load_sweep([ROOT / "configs" / "demo.yaml"]), AirflowSettings.from_env())
    (dag,) = dags.values()
    return {tid: t.queue for tid, t in dag.task_dict.items()}


def test_node_tasks_route_to_the_runner_label_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    queues = _dag_queues(monkeypatch)
    assert {t for t, q in queues.items() if q == "sim-h100"} == NODE_TASKS
    assert all(q == "default" for t, q in queues.items() if t not in NODE_TASKS)


def test_real_celery_workers_receive_their_queue(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not _redis_up():
        pytest.skip("Redis not reachable at 127.0.0.1:6379")
    queues = _dag_queues(monkeypatch)
    env = dict(os.environ, PROBE_BROKER="redis://127.0.0.1:6379/14", PROBE_BACKEND="redis://127.0.0.1:6379/15",
               PYTHONPATH=str(Path(__file__).parent))
    workers = {}
    for queue in ("default", "sim-h100"):
        log = (tmp_path / f"{queue}.log").open("wb")
        workers[queue] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_probe", "worker", "-Q", queue, "-c", "1", "-P", "solo",
             "-n", f"{queue}@probe", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING"],
            env={**env, "PROBE_WORKER": queue}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        os.environ.update(PROBE_BROKER=env["PROBE_BROKER"], PROBE_BACKEND=env["PROBE_BACKEND"], PROBE_WORKER="client")
        import celery_probe

        celery_probe.app.control.purge()
        results = {tid: celery_probe.where.apply_async(args=[tid], queue=q) for tid, q in queues.items()}
        landed = {tid: r.get(timeout=120)["worker"] for tid, r in results.items()}
        assert landed == queues, f"tasks landed on the wrong worker: {landed} vs {queues}"
    finally:
        sys.path.remove(str(Path(__file__).parent))
        stop_process_groups(workers.values())
