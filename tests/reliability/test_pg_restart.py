"""Promise 5: Postgres restarted mid-sweep. Results spooled locally are flushed after reconnect; zero lost.

The sweep runs under `dag.test` (Airflow metadata on SQLite, results on a fresh Postgres database): the
real scheduler keeps its own metadata on the same Postgres in the services lane, and a restart there fails
task heartbeats rather than anything of ours. The cluster is stopped while benchmarks run, kept down until a
benchmark point has gone to the local spool, and started again (a few seconds; it is shared infrastructure).
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from infersweep.config.inventory import Node
from infersweep.store.db import get_engine
from infersweep.store.leases import LeaseHolder, acquire_lease, heartbeat
from infersweep.store.migrate import upgrade
from tests.airflow.harness import AirflowHome, finish, sim_servers_running, sim_sweep
from tests.reliability.outages import fresh_pg_database, pg_accepting, pg_cluster, postgres_down

KEY = "pgrestart-bf16-sim-h100-vllm"
CONCS = [1, 2, 4, 8]
SWEEP = sim_sweep(
    KEY, isl=256, osl=256, points=[f"{{ tp: 1, conc-list: {CONCS} }}", f"{{ tp: 2, conc-list: {CONCS} }}"],
    nodes=["pg-node-0", "pg-node-1"], sim_yaml="{ time-scale: 2 }",
    bench_yaml="{ random-range-ratio: 1.0, prompts-per-conc: 2, warmups-per-conc: 1 }")
PLANNED = 2 * len(CONCS)
MAX_OUTAGE_S = 30.0


def test_heartbeat_rides_out_an_unreachable_db_until_the_confirmed_expiry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    upgrade(url)
    lease = acquire_lease(get_engine(url), runner="pgr", holder=LeaseHolder(dag_id="d", run_id="r", group_id="g"),
                          ttl_s=60, nodes=[Node(name="pgr-0", runner="pgr")])
    assert lease is not None
    down = get_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")  # nothing listens on port 1
    assert heartbeat(down, lease) == lease  # still ours: nobody can expire it before expires_at
    with pytest.raises(sa_exc.OperationalError):
        heartbeat(down, lease, now=lease.expires_at + timedelta(seconds=1))
    down.dispose()


def _spooled(work: Path) -> list[dict]:
    out = []
    for f in (work / "spool").glob("*.jsonl"):
        for line in f.read_bytes().splitlines():
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue  # a line being appended right now
    return out


def _points(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT g.group_id, b.conc, b.status FROM benchmark_results b JOIN serve_groups g ON g.id = b.group_pk "
            "ORDER BY g.group_id, b.conc"))]


@pytest.mark.integration
@pytest.mark.e2e
def test_postgres_restart_mid_sweep_loses_nothing(tmp_path: Path) -> None:
    pg_cluster()  # skips with the reason when the cluster cannot be restarted here
    with fresh_pg_database("pgrestart") as pg_url:
        _restart_mid_sweep(tmp_path, pg_url)


def _restart_mid_sweep(tmp_path: Path, pg_url: str) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(SWEEP)
    work = tmp_path / "work"
    home = AirflowHome(path=tmp_path / "airflow", configs=str(sweep), results_url=pg_url, work_dir=work)
    home.migrate()
    upgrade(pg_url)
    engine = get_engine(pg_url)
    proc = home.start(KEY, {"force": True, "eval": False})
    try:
        deadline = time.monotonic() + 600
        while len(before := _points(engine)) < 2:
            assert proc.poll() is None, f"dag.test ended before two points were stored:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "no benchmark points after 600 s"
            time.sleep(0.5)
        assert len(before) < PLANNED, "the sweep finished before the restart; slow the sim"
        spooled: list[dict] = []
        with postgres_down() as outage:
            while not (spooled := [r for r in _spooled(work) if r["kind"] == "benchmark"]):
                if outage.elapsed() > MAX_OUTAGE_S or proc.poll() is not None:
                    break
                time.sleep(0.1)
        assert pg_accepting(), "Postgres did not come back"
        assert spooled, f"no benchmark record reached the spool during a {outage.total_s:.1f} s outage"
        out = finish(proc, timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert out["state"] == "success", json.dumps(out, indent=1)

    after = _points(engine)
    assert len(after) == PLANNED and all(s == "ok" for _, _, s in after), after
    assert len({(g, c) for g, c, _ in after}) == PLANNED  # no duplicates
    assert {(g, c) for g, c, _ in before} <= {(g, c) for g, c, _ in after}
    for rec in spooled:  # every point that waited in the spool reached the database
        assert (rec["data"]["group_id"], rec["data"]["conc"]) in {(g, c) for g, c, _ in after}, rec
    assert _spooled(work) == [], "records left in the spool after the run"
    assert not list((work / "spool").glob("*.rejected"))
    assert sim_servers_running(work) == []
    with engine.connect() as conn:
        failed_tries = conn.execute(text("SELECT count(*) FROM attempts WHERE status = 'failed'")).scalar_one()
    print(f"\nFIGURES pg-restart: outage {outage.total_s:.1f} s (stop issued -> accepting again), "
          f"{len(spooled)} benchmark record(s) spooled, {len(before)} point(s) before, {len(after)}/{PLANNED} "
          f"after, 0 lost, 0 duplicated, {failed_tries} failed task tries")
    engine.dispose()
