"""Promise 7: dockerd restarted during serve (Docker lane). The failure is classified transient and recovers.

The chain's own `serve` task body runs against a private dockerd (the simulated engine inside an imported
rootfs image, as in tests/integration/test_docker_engine.py). The daemon is stopped while the server is
still starting: the try fails as `docker_daemon_unavailable` (transient: the retry policy retries it), its
lease is released and the attempt is stored with its class. With the daemon back, the retry serves; the
teardown leaves no container and no held lease.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path

import pytest
from airflow.sdk import RetryAction
from sqlalchemy import text

from infersweep.airflow import steps
from infersweep.airflow.context import RunContext, free_port
from infersweep.airflow.planning import plan_run
from infersweep.airflow.retry import FailureClassRetryPolicy
from infersweep.engines.docker import LABEL_RUN_ID
from infersweep.engines.readiness import http_get
from infersweep.faults import classify
from infersweep.recipes.model import Mount, Recipe
from infersweep.store.db import get_engine
from infersweep.store.leases import active_leases
from tests.airflow.harness import sim_sweep
from tests.reliability.outages import fresh_pg_database, private_dockerd

pytestmark = pytest.mark.integration
KEY = "dockerd-bf16-sim-h100-vllm"
SWEEP = sim_sweep(KEY, isl=128, osl=16, points=["{ tp: 1, conc-list: [1] }"], nodes=["dk-node-0"])
PARAMS = {"engine": "vllm-docker", "force": True, "eval": False}


def _sim_in_container(image: str, repo_root: Path, port: int) -> Recipe:
    """The simulated engine as a container recipe: host /usr, Python, venv and repo bind-mounted read-only."""
    cli = Path(sys.prefix) / "bin" / "infersweep"
    mounts: list[Mount] = []
    for src in ("/usr", sys.base_prefix, sys.prefix, str(repo_root)):
        if not any(src == m.source or src.startswith(m.source.rstrip("/") + "/") for m in mounts):
            mounts.append(Mount(source=src, target=src, read_only=True))
    recipe = Recipe(
        image=image, model="HuggingFaceTB/SmolLM2-135M", gpus=0, port=port, serve_group="dk",
        argv=(str(cli), "sim", "serve", "--host", "0.0.0.0", "--port", str(port), "--model-profile",
              "smollm2-135m", "--gpu-profile", "h100", "--time-scale", "10", "--startup-delay", "8"),
        env={"PYTHONDONTWRITEBYTECODE": "1"}, mounts=tuple(mounts), ready_timeout_s=120)
    return recipe


def _rc(run_id: str, task: str, try_number: int) -> RunContext:
    return RunContext(dag_id=KEY, run_id=run_id, task_id=f"serve_group.{task}", try_number=try_number, map_index=0,
                      params=PARAMS)


def test_dockerd_restart_during_serve_is_transient_and_recovers(tmp_path: Path, repo_root: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import docker

    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    with private_dockerd() as dockerd, fresh_pg_database("dockerd") as url:
        image = dockerd.import_rootfs()
        for k, v in {"INFERSWEEP_CONFIGS": str(sweep), "INFERSWEEP_DB_URL": url,
                     "INFERSWEEP_WORK_DIR": str(tmp_path / "work"), "INFERSWEEP_LEASE_TTL_S": "600"}.items():
            monkeypatch.setenv(k, v)
        run_id = "manual__dockerd_1"
        [work] = plan_run(KEY, _rc(run_id, "plan", 1))
        node = work.nodes[0].model_copy(update={"docker_url": dockerd.url, "host": "127.0.0.1"})
        work = work.model_copy(update={"nodes": (node,), "recipe": _sim_in_container(image, repo_root, free_port())})
        client = docker.DockerClient(base_url=dockerd.url, timeout=30)

        def containers() -> list:
            return client.containers.list(all=True, filters={"label": f"{LABEL_RUN_ID}={run_id}"})

        # Try 1: dockerd goes away while the server is starting (its /health is 8 s away).
        failure: list[BaseException] = []

        def serve_try1() -> None:
            try:
                steps.serve(work, _rc(run_id, "serve", 1))
            except BaseException as exc:
                failure.append(exc)

        t = threading.Thread(target=serve_try1)
        t.start()
        deadline = time.monotonic() + 120
        while not [c for c in containers() if c.status == "running"]:
            assert t.is_alive() and time.monotonic() < deadline, f"no running container: {failure}"
            time.sleep(0.2)
        client.close()
        t0 = time.monotonic()
        dockerd.stop()
        stop_s = time.monotonic() - t0
        t.join(timeout=180)
        failed_s = time.monotonic() - t0
        assert not t.is_alive(), "serve did not return after dockerd stopped"
        assert failure, "serve succeeded although dockerd was stopped during its readiness wait"
        exc = failure[0]
        fc = classify(exc)
        assert (fc.kind, fc.transient) == ("docker_daemon_unavailable", True), (fc, exc)
        decision = FailureClassRetryPolicy().evaluate(exc, try_number=1, max_tries=4)
        assert decision.action == RetryAction.RETRY and decision.retry_delay is not None, decision
        engine = get_engine(url)
        assert active_leases(engine) == [], "the failed try kept its node lease"

        # Try 2, after dockerd is back: the same task serves (the exited container of try 1 is replaced).
        t1 = time.monotonic()
        dockerd.start()
        daemon_s = time.monotonic() - t1
        client = docker.DockerClient(base_url=dockerd.url, timeout=30)
        served = steps.serve(work, _rc(run_id, "serve", 2))
        serve2_s = time.monotonic() - t1 - daemon_s
        try:
            assert http_get(f"{served.state.handle.base_url}/health", 10)[0] == 200
            assert [c.status for c in containers()] == ["running"]
        finally:
            steps.teardown(served, _rc(run_id, "stop", 1))
        assert containers() == [] and active_leases(engine) == []
        with engine.connect() as conn:
            attempts = conn.execute(text(
                "SELECT a.task_id, a.try_number, a.status, a.failure_kind FROM attempts a "
                "JOIN runs r ON r.id = a.run_pk WHERE r.run_id = :run ORDER BY a.task_id, a.try_number"),
                {"run": run_id}).all()
        got = {(a, n): (s, k) for a, n, s, k in attempts}
        assert got[("serve_group.serve", 1)] == ("failed", "docker_daemon_unavailable"), attempts
        assert got[("serve_group.serve", 2)][0] == "success", attempts
        print(f"\nFIGURES dockerd-restart: dockerd stop {stop_s:.1f} s; serve try 1 failed "
              f"{failed_s - stop_s:.1f} s after the daemon was gone ({fc.kind}); dockerd start {daemon_s:.1f} s; "
              f"serve try 2 ready in {serve2_s:.1f} s (sim start-up delay 8 s)")
        with contextlib.suppress(Exception):
            client.close()
        engine.dispose()
