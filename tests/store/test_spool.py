"""The spool: nothing is lost while the DB is down; replays are idempotent; torn lines are set aside."""

from __future__ import annotations

import socket
from pathlib import Path

from sqlalchemy import func, select

from infersweep.store.api import ResultStore
from infersweep.store.models import BenchmarkResult, Run
from infersweep.store.spool import Spool

from .helpers import group, point, recipe


def _dead_pg_url() -> str:
    # A port nobody listens on: connections are refused at once, like a Postgres that is restarting.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/results"


def _points(engine, dag_id: str) -> int:
    b, r = BenchmarkResult.tbl(), Run.tbl()
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(b.join(r, r.c.id == b.c.run_pk))
                                .where(r.c.dag_id == dag_id)).scalar_one())


def test_results_written_while_db_is_down_are_flushed_later(engine, db_url, dag_id, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    down = ResultStore(dag_id=dag_id, run_id="r1", url=_dead_pg_url(), spool_path=spool)
    g = group()
    down.start_run(trigger_kind="manual")
    down.record_group(g, recipe=recipe())
    for conc in g.concs:  # the benchmark keeps going; every call returns
        down.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=conc, result=point(conc), gpus=1)
    assert len(down.spool.pending()) == 2 + len(g.concs)
    result = down.flush(timeout_s=0.1)
    assert not result.complete and result.error and result.remaining == 6
    assert _points(engine, dag_id) == 0

    # The DB is back (same spool file, reachable URL): the next write delivers everything, in order.
    up = ResultStore(dag_id=dag_id, run_id="r1", url=db_url, spool_path=spool)
    up.record_attempt(task_id="bench", try_number=1, status="success", group_id=g.id)
    assert up.spool.pending() == []
    assert _points(engine, dag_id) == 4
    assert up.summary()["label"] == "4/4 green"


def test_flush_replay_is_idempotent(engine, db_url, dag_id, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    store = ResultStore(dag_id=dag_id, run_id="r1", url=db_url, spool_path=spool)
    g = group()
    store.start_run(trigger_kind="manual")
    store.record_group(g)
    store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=1, result=point(1), gpus=1)
    # Simulate a crash after the DB write but before the spool was truncated: the same records again.
    s = Spool(spool)
    s.append("group", {"dag_id": dag_id, "run_id": "r1", "group_id": g.id})
    s.append("benchmark", {"dag_id": dag_id, "run_id": "r1", "group_id": g.id, "isl": g.isl, "osl": g.osl,
                           "conc": 1, "status": "ok", "engine": "sim", "output_tput_per_gpu": 1000.0})
    assert store.flush().complete
    assert _points(engine, dag_id) == 1


def test_torn_and_invalid_records_are_set_aside_not_blocking(db_url, dag_id, tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.jsonl"
    store = ResultStore(dag_id=dag_id, run_id="r1", url=db_url, spool_path=spool_path)
    store.start_run(trigger_kind="manual")
    with open(spool_path, "ab") as fh:  # a crash mid-append leaves half a line
        fh.write(b'{"id": "x", "kind": "benchmark", "data": {"dag_')
    store.spool.append("no_such_kind", {"dag_id": dag_id, "run_id": "r1"})
    result = store.flush()
    assert result.complete and result.rejected == 2
    rejected = store.spool.rejected_path.read_text()
    assert "torn" in rejected and "no_such_kind" in rejected


def _append_many(path: str, worker: int, n: int) -> None:
    spool = Spool(Path(path))
    for i in range(n):
        spool.append("benchmark", {"worker": worker, "i": i})


def test_concurrent_processes_never_lose_or_tear_records(tmp_path: Path) -> None:
    import multiprocessing as mp

    path = tmp_path / "shared.jsonl"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, 50)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert all(p.exitcode == 0 for p in procs)
    pending = Spool(path).pending()
    assert len(pending) == 200
    assert {(r["data"]["worker"], r["data"]["i"]) for r in pending} == {(w, i) for w in range(4) for i in range(50)}


def test_postgres_connections_killed_mid_sweep_lose_nothing(pg_url: str, tmp_path: Path) -> None:
    """Like a Postgres restart: every server-side connection of the results DB is terminated between two
    points. Pooled connections are dead; the store must reconnect and deliver every point exactly once."""
    import uuid

    import psycopg
    from sqlalchemy.engine import make_url

    from infersweep.store.migrate import upgrade

    upgrade(pg_url)
    dag = f"restart-{uuid.uuid4().hex[:6]}"
    store = ResultStore(dag_id=dag, run_id="r1", url=pg_url, spool_path=tmp_path / "spool.jsonl")
    g = group(concs=(1, 2, 4, 8, 16, 32))
    store.start_run(trigger_kind="scheduled")
    store.record_group(g, recipe=recipe())
    for conc in g.concs[:3]:
        store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=conc, result=point(conc), gpus=1)
    db = make_url(pg_url).database
    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5",
                         autocommit=True) as admin:
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               "WHERE datname = %s AND pid <> pg_backend_pid()", (db,)).fetchone()
    assert killed is not None and killed[0] >= 1
    for conc in g.concs[3:]:
        store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=conc, result=point(conc), gpus=1)
    assert store.flush().complete
    assert _points(store.engine, dag) == 6
    assert store.summary()["label"] == "6/6 green"
