"""Promise 4: a worker killed mid-chain (kill -9 of the benchmark task process under the real scheduler).

The lease expires, the reaper stops the orphan server, the group is retried (a new lease, a fresh server)
and nothing is duplicated: every point is stored once and the points measured before the kill are not
measured again.

The first tests pin the local reaper's safety rules without Airflow (it must never signal a process that is
not the recorded server: other process-group members, PID reuse, unknown leases, other hosts).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text

from infersweep.config.inventory import Node
from infersweep.engines.reaper import SERVER_MARKER_ENV, LocalServer, ServerRegistry, reap_local
from infersweep.store.db import get_engine
from infersweep.store.leases import LeaseHolder, acquire_lease, expire_stale, lease_active, lease_history
from infersweep.store.migrate import upgrade
from infersweep.store.models import utcnow
from tests.airflow.harness import sim_servers_running, sim_sweep
from tests.conftest import _pg_reachable
from tests.integration.airflow_services import airflow_stack

SLEEPER = "import time; time.sleep(600)"
# A "server" that forks a worker into its own session (as engines do for GPU workers); both carry the marker.
FORKING = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
           " start_new_session=True); time.sleep(600)")


@contextlib.contextmanager
def _procs() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for p in started:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait(timeout=10)


def _spawn(started: list, code: str, *, marker: str | None = None, pgid: int | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop(SERVER_MARKER_ENV, None)
    if marker:
        env[SERVER_MARKER_ENV] = marker
    # Own process group (0) or an existing one; in this session, so another process may join the group.
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, process_group=pgid or 0)
    started.append(proc)
    return proc


def _record(registry: ServerRegistry, proc: subprocess.Popen, server_id: str, token: str, **over) -> LocalServer:
    server = LocalServer.from_pid(server_id=server_id, lease_token=token, lease_id=1, node="n", holder=f"d/r/{server_id}/try1",
                                  pid=proc.pid, pgid=os.getpgid(proc.pid),
                                  create_time=psutil.Process(proc.pid).create_time())
    if over:
        server = LocalServer(**{**server.__dict__, **over})
    registry.add(server)
    return server


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _children_marked(marker: str) -> list[int]:
    out = []
    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if p.environ().get(SERVER_MARKER_ENV) == marker:
                out.append(p.pid)
    return out


@pytest.mark.integration
def test_reaper_stops_exactly_the_marked_processes_of_ended_leases(tmp_path: Path) -> None:
    registry = ServerRegistry(tmp_path / "local-servers")
    states = {"ended": False, "live": True}  # any other token: unknown to this results DB
    with _procs() as started:
        orphan = _spawn(started, FORKING, marker="srv-orphan")
        decoy = _spawn(started, SLEEPER, pgid=orphan.pid)  # same process group, no marker: not ours
        live = _spawn(started, SLEEPER, marker="srv-live")
        unknown = _spawn(started, SLEEPER, marker="srv-unknown")
        foreign = _spawn(started, SLEEPER, marker="srv-foreign")
        deadline = time.monotonic() + 30
        while len(_children_marked("srv-orphan")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the orphan's forked worker
        worker_pids = set(_children_marked("srv-orphan")) - {orphan.pid}
        assert worker_pids, "the forking server did not start its worker"
        _record(registry, orphan, "srv-orphan", "ended")
        _record(registry, live, "srv-live", "live")
        _record(registry, unknown, "srv-unknown", "other-db-token")
        _record(registry, foreign, "srv-foreign", "ended", host="another-host")
        # PID reuse: a record naming the decoy's PID, but another start time and marker, lease ended.
        _record(registry, decoy, "srv-reused", "ended", create_time=psutil.Process(decoy.pid).create_time() - 3600)

        done = reap_local(registry, lambda token: states.get(token), grace_s=5)

        assert [(r.server_id, r.removed) for r in done] == [("srv-orphan", True)], done
        assert set(done[0].pids) == {orphan.pid, *worker_pids}
        orphan.wait(timeout=10)
        assert not any(_alive(p) for p in worker_pids), "the orphan's worker (own session) survived"
        for p in (decoy, live, unknown, foreign):
            assert p.poll() is None, f"reaper signalled an unrelated process {p.args}"
        kept = {s.server_id for s in registry.all()}
        # The orphan's record is gone; the reused-PID record had no live process and is pruned too.
        assert kept == {"srv-live", "srv-unknown", "srv-foreign"}


@pytest.mark.integration
def test_lease_state_decides_and_unanswerable_keeps(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    upgrade(url)
    engine = get_engine(url)
    nodes = [Node(name="wk-n0", runner="wk")]
    lease = acquire_lease(engine, runner="wk", holder=LeaseHolder(dag_id="d", run_id="r", group_id="g"), ttl_s=30,
                          nodes=nodes)
    assert lease is not None
    assert lease_active(engine, lease.token) is True
    assert lease_active(engine, "no-such-token") is None
    registry = ServerRegistry(tmp_path / "local-servers")
    with _procs() as started:
        server = _spawn(started, SLEEPER, marker="srv-a")
        _record(registry, server, "srv-a", lease.token)
        assert reap_local(registry, lambda t: lease_active(engine, t)) == []  # held: kept

        def broken(_token: str) -> bool:
            raise RuntimeError("results DB unreachable")

        assert expire_stale(engine, now=utcnow() + timedelta(seconds=31))
        assert reap_local(registry, broken) == [] and server.poll() is None  # cannot tell: kept
        gone = reap_local(registry, lambda t: lease_active(engine, t), grace_s=5)
        assert [g.server_id for g in gone] == ["srv-a"] and server.wait(timeout=10) is not None
        assert registry.all() == []


# ---------------------------------------------------------------------------------------------------- e2e
KEY = "wkill-bf16-sim-h100-vllm"
CONCS = [1, 2, 4]
TTL_S = 20  # covers scheduling gaps between the chain's tasks on a loaded 2-core runner
SWEEP = sim_sweep(
    KEY, isl=256, osl=256, points=[f"{{ tp: 1, conc-list: {CONCS} }}"], nodes=["wk-node-0"],
    sim_yaml="{ time-scale: 2 }", bench_yaml="{ random-range-ratio: 1.0, prompts-per-conc: 2, warmups-per-conc: 1 }")


def _wait(what: str, probe, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _points(engine, run_id: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT b.conc, b.status, b.updated_at FROM benchmark_results b JOIN runs r ON r.id = b.run_pk "
            "WHERE r.run_id = :run ORDER BY b.conc"), {"run": run_id})]


def _ti(client: httpx.Client, run_id: str, task: str) -> dict:
    r = client.get(f"/dags/{KEY}/dagRuns/{run_id}/taskInstances/serve_group.{task}/0")
    return r.json() if r.status_code == 200 else {}


@pytest.mark.integration
@pytest.mark.e2e
def test_worker_killed_mid_benchmark_lease_expires_orphan_reaped_group_retried(tmp_path: Path) -> None:
    if not _pg_reachable():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    work = tmp_path / "work"
    with airflow_stack(tmp_path, configs=str(sweep), extra_env={"INFERSWEEP_LEASE_TTL_S": str(TTL_S)}) as stack, \
            stack.client() as client:
        _wait("the DAG to be parsed", lambda: client.get(f"/dags/{KEY}").status_code == 200, 180, 2)
        assert client.patch(f"/dags/{KEY}", json={"is_paused": False}).status_code == 200
        run_id = "wkill_1"
        r = client.post(f"/dags/{KEY}/dagRuns", json={"dag_run_id": run_id, "logical_date": None,
                                                      "conf": {"force": True, "eval": False}})
        assert r.status_code == 200, r.text
        engine = get_engine(stack.results_url)

        # Kill the benchmark task process once it has stored its first point (mid-benchmark).
        ti = _wait("benchmark running with a stored point", lambda: (
            (t := _ti(client, run_id, "benchmark")).get("state") == "running" and t.get("pid")
            and len(_points(engine, run_id)) >= 1 and t), 420)
        before = _points(engine, run_id)
        assert len(before) < len(CONCS), f"benchmark finished before the kill; slow the sim: {before}"
        victim = psutil.Process(int(ti["pid"]))
        assert "airflow" in " ".join(victim.cmdline()) or "python" in victim.name(), victim.cmdline()
        # Hold the retry until the lease has expired (Airflow would retry after 15 s; the TTL is longer).
        assert client.patch(f"/dags/{KEY}", json={"is_paused": True}).status_code == 200
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.wait(timeout=30)
        held = [x for x in lease_history(engine) if x.holder.split("/")[1] == run_id and x.released_at is None]
        assert len(held) == 1, held
        lease_id, token = held[0].id, held[0].token
        registry = ServerRegistry(work / "local-servers")
        orphans = [s for s in registry.all() if s.lease_token == token]
        assert len(orphans) == 1, registry.all()
        orphan = orphans[0]
        assert _alive(orphan.pid), "the server should outlive its killed task (own process group)"
        # No heartbeat can come from the dead task: its last one set this expiry.
        expires = next(x.expires_at for x in lease_history(engine) if x.token == token)
        _wait("the lease to pass its expiry", lambda: utcnow() > expires, TTL_S + 60, 1)
        expired_after = time.monotonic() - killed_at
        assert client.patch(f"/dags/{KEY}", json={"is_paused": False}).status_code == 200

        state = _wait("the run to finish", lambda: (
            s := client.get(f"/dags/{KEY}/dagRuns/{run_id}").json()["state"]) in ("success", "failed") and s, 600, 3)
        assert state == "success", stack.logs()

        bench = _ti(client, run_id, "benchmark")
        assert bench["state"] == "success" and bench["try_number"] >= 2, bench
        # The orphan is gone and it was the reaper (its lease expired) that ended it, not a teardown.
        assert not _alive(orphan.pid)
        assert orphan.server_id not in {s.server_id for s in registry.all()}
        with engine.connect() as conn:
            leases = conn.execute(text(
                "SELECT id, holder_try, release_reason FROM node_leases WHERE holder_run_id = :run ORDER BY id"),
                {"run": run_id}).all()
        assert (lease_id, 1, "expired") in [tuple(x) for x in leases], leases
        assert len(leases) == 2 and leases[1][1] >= 2 and leases[1][2] == "released", leases
        # Nothing duplicated, nothing re-measured: one ok row per conc; the pre-kill rows are untouched.
        after = _points(engine, run_id)
        assert [c for c, _, _ in after] == CONCS and all(s == "ok" for _, s, _ in after), after
        assert {c: t for c, _, t in before} == {c: t for c, _, t in after if c in {b[0] for b in before}}
        assert sim_servers_running(work) == []
        print(f"\nFIGURES worker-kill: killed after {len(before)}/{len(CONCS)} points; lease (TTL {TTL_S} s) expired "
              f"{expired_after:.0f} s after the kill; run green {time.monotonic() - killed_at:.0f} s after the kill; "
              f"benchmark try {bench['try_number']}; {len(after)} rows for {len(CONCS)} points")
        engine.dispose()
