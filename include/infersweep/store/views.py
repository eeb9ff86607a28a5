"""Read side: the views created by the migrations, as Python query functions returning plain dicts.

The report package reads results through these functions (or the views directly), never by joining the
raw tables itself, so the definitions of "latest", "green" and "failure class" live in one place.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, MetaData, Table, select

_meta = MetaData()


def _view(engine: Engine, name: str) -> Table:
    # Reflected once per process: the views' columns are defined by the migration, not duplicated here.
    table = _meta.tables.get(name)
    if table is None:
        table = Table(name, _meta, autoload_with=engine)
    return table


def _rows(engine: Engine, stmt: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]


def _of_run(stmt: Any, v: Table, dag_id: str | None, run_id: str | None) -> Any:
    if dag_id:
        stmt = stmt.where(v.c.dag_id == dag_id)
    if run_id:
        stmt = stmt.where(v.c.run_id == run_id)
    return stmt


def latest_results(
    engine: Engine,
    *,
    backend: str | None = None,
    config_key: str | None = None,
    isl: int | None = None,
    osl: int | None = None,
) -> list[dict[str, Any]]:
    """Newest successful point per (engine kind, config, topology, isl, osl, conc)."""
    v = _view(engine, "v_latest_results")
    stmt = select(v)
    for col, value in (("engine", backend), ("config_key", config_key), ("isl", isl), ("osl", osl)):
        if value is not None:
            stmt = stmt.where(v.c[col] == value)
    return _rows(engine, stmt.order_by(v.c.config_key, v.c.isl, v.c.osl, v.c.tp, v.c.conc))


def run_summary(
    engine: Engine, *, dag_id: str | None = None, run_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Per-run counts, newest first, each with a `label` like "53/55 green" and `not_executed` (the work the
    run planned but does not execute yet, e.g. {"agentic-coding": {"jobs": 12, ...}}, or None)."""
    from infersweep.store.models import Run

    v = _view(engine, "v_run_summary")
    rows = _rows(engine, _of_run(select(v), v, dag_id, run_id).order_by(v.c.run_pk.desc()).limit(limit))
    pks = [row["run_pk"] for row in rows]
    skipped: dict[int, Any] = {}
    if pks:
        t = Run.tbl()
        with engine.connect() as conn:
            stmt = select(t.c.id, t.c.not_executed).where(t.c.id.in_(pks), t.c.not_executed.is_not(None))
            skipped = dict(conn.execute(stmt).tuples().all())
    for row in rows:
        row["label"] = f"{row['points_ok']}/{row['points_total']} green"
        row["not_executed"] = skipped.get(row["run_pk"])
    return rows


def failure_breakdown(
    engine: Engine, *, dag_id: str | None = None, run_id: str | None = None
) -> list[dict[str, Any]]:
    """Failures by class (source: point | eval | attempt), most frequent first."""
    v = _view(engine, "v_failure_breakdown")
    return _rows(engine, _of_run(select(v), v, dag_id, run_id).order_by(v.c.n.desc(), v.c.failure_kind))


def run_points(engine: Engine, *, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Every point of one run, failures included (for the report's table), without the raw client JSON."""
    from infersweep.store.models import BenchmarkResult, Run

    t = BenchmarkResult.tbl()
    cols = [c for c in t.c if c.name != "raw"]
    stmt = (
        select(*cols).join(Run.tbl(), Run.tbl().c.id == t.c.run_pk)
        .where(Run.tbl().c.dag_id == dag_id, Run.tbl().c.run_id == run_id)
        .order_by(t.c.isl, t.c.osl, t.c.tp, t.c.conc)
    )
    return _rows(engine, stmt)
