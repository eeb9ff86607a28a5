"""Reuse of finished work: skip points already measured, and copy a run's results with provenance.

A point is "done" when a successful result exists for the same recipe fingerprint (everything that
defines the server: image, argv, env, model) and the same image digest (or tag when no digest is known),
at the same (isl, osl, conc), from the same kind of engine (sim results never satisfy a real run).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, Engine, or_, select

from infersweep.store.db import write_transaction
from infersweep.store.models import BenchmarkResult, EvalResult, EvalSample, Run, ServeGroupRow, utcnow
from infersweep.store.upsert import upsert


def _image_filter(table: Any, image_digest_or_tag: str) -> Any:
    return or_(table.c.image_digest == image_digest_or_tag, table.c.image == image_digest_or_tag)


def completed_points(
    engine: Engine | Connection,
    *,
    recipe_fingerprint: str,
    image_digest_or_tag: str,
    isl: int,
    osl: int,
    backend: str | None = None,
) -> set[int]:
    """Concurrencies with a successful result for this recipe + image at (isl, osl)."""
    t = BenchmarkResult.tbl()
    stmt = select(t.c.conc).distinct().where(
        t.c.status == "ok", t.c.recipe_fingerprint == recipe_fingerprint, t.c.isl == isl, t.c.osl == osl,
        _image_filter(t, image_digest_or_tag),
    )
    if backend:
        stmt = stmt.where(t.c.engine == backend)
    with _connect(engine) as conn:
        return {int(c) for c in conn.execute(stmt).scalars()}


def completed_evals(
    engine: Engine | Connection,
    *,
    recipe_fingerprint: str,
    image_digest_or_tag: str,
    task: str = "gsm8k",
    backend: str | None = None,
) -> set[int]:
    """Eval concurrencies with a scored result (pass or fail: the score is a measurement) for this recipe + image."""
    t = EvalResult.tbl()
    stmt = select(t.c.conc).distinct().where(
        t.c.status == "ok", t.c.recipe_fingerprint == recipe_fingerprint, t.c.task == task,
        _image_filter(t, image_digest_or_tag),
    )
    if backend:
        stmt = stmt.where(t.c.engine == backend)
    with _connect(engine) as conn:
        return {int(c) for c in conn.execute(stmt).scalars()}


class _connect:
    """Use a given Connection as is, or open one from an Engine."""

    def __init__(self, bind: Engine | Connection) -> None:
        self.bind = bind
        self.conn: Connection | None = None

    def __enter__(self) -> Connection:
        if isinstance(self.bind, Connection):
            return self.bind
        conn = self.bind.connect()
        self.conn = conn
        return conn

    def __exit__(self, *exc: object) -> None:
        if self.conn is not None:
            self.conn.close()


def _run_pk(conn: Connection, run_id: str, dag_id: str | None) -> int:
    stmt = select(Run.id).where(Run.run_id == run_id)
    if dag_id:
        stmt = stmt.where(Run.dag_id == dag_id)
    found = conn.execute(stmt).scalars().all()
    if not found:
        raise LookupError(f"run {run_id!r}{f' of DAG {dag_id!r}' if dag_id else ''} is not in the results DB")
    if len(found) > 1:
        raise LookupError(f"run id {run_id!r} exists in several DAGs; pass the dag_id too")
    return int(found[0])


_SKIP_COPY = {"id", "run_pk", "group_pk", "created_at", "updated_at", "reused_from_id", "reused_from_run_pk"}


def _copy_group(conn: Connection, src: dict[str, Any], target_pk: int) -> int:
    values = {k: v for k, v in src.items() if k not in {"id", "run_pk", "created_at", "updated_at"}}
    values.update(run_pk=target_pk, reused_from_group_pk=src["id"])
    existing = conn.execute(
        select(ServeGroupRow.id).where(ServeGroupRow.run_pk == target_pk, ServeGroupRow.group_id == src["group_id"])
    ).scalar_one_or_none()
    if existing is not None:  # the target run planned/ran this group itself: keep its row
        return int(existing)
    pk = upsert(conn, ServeGroupRow, values, key=("run_pk", "group_id"), do_nothing=True)
    assert pk is not None
    return pk


def copy_results(
    conn: Connection,
    *,
    source_run_pk: int,
    target_run_pk: int,
    group_ids: Iterable[str] | None = None,
    concs: dict[str, set[int]] | None = None,
) -> dict[str, int]:
    """Copy successful results (points, evals + samples) between runs inside `conn`'s transaction.

    Rows the target already has are kept (ON CONFLICT DO NOTHING: a measurement beats a copy). Each
    copied row records `reused_from_id` / `reused_from_run_pk` as provenance.
    """
    g = ServeGroupRow.tbl()
    stmt = select(g).where(g.c.run_pk == source_run_pk)
    if group_ids is not None:
        stmt = stmt.where(g.c.group_id.in_(list(group_ids)))
    counts = {"groups": 0, "points": 0, "evals": 0, "samples": 0}
    for src in conn.execute(stmt).mappings().all():
        target_group = _copy_group(conn, dict(src), target_run_pk)
        counts["groups"] += 1
        wanted = concs.get(src["group_id"]) if concs is not None else None
        counts["points"] += _copy_rows(conn, BenchmarkResult, src["id"], target_run_pk, target_group, wanted,
                                       key=("run_pk", "group_pk", "isl", "osl", "conc"))
        evals = _copy_rows(conn, EvalResult, src["id"], target_run_pk, target_group, None,
                           key=("run_pk", "group_pk", "task", "conc"), with_samples=counts)
        counts["evals"] += evals
    return counts


def _copy_rows(conn: Connection, model: Any, src_group: int, target_run: int, target_group: int,
               concs: set[int] | None, *, key: tuple[str, ...], with_samples: dict[str, int] | None = None) -> int:
    t = model.tbl()
    stmt = select(t).where(t.c.group_pk == src_group, t.c.status == "ok")
    if concs is not None:
        stmt = stmt.where(t.c.conc.in_(sorted(concs)))
    n = 0
    for row in conn.execute(stmt).mappings().all():
        values = {k: v for k, v in row.items() if k not in _SKIP_COPY}
        values.update(run_pk=target_run, group_pk=target_group, reused_from_id=row["id"],
                      reused_from_run_pk=row["run_pk"], created_at=utcnow())
        new_pk = upsert(conn, model, values, key=key, do_nothing=True)
        n += 1
        if with_samples is not None and new_pk is not None:
            with_samples["samples"] += _copy_samples(conn, row["id"], new_pk)
    return n


def _copy_samples(conn: Connection, src_eval: int, target_eval: int) -> int:
    s = EvalSample.tbl()
    have = conn.execute(select(s.c.doc_id).where(s.c.eval_pk == target_eval).limit(1)).first()
    if have is not None:
        return 0
    rows = [
        {k: v for k, v in r.items() if k != "id"} | {"eval_pk": target_eval}
        for r in conn.execute(select(s).where(s.c.eval_pk == src_eval)).mappings().all()
    ]
    if rows:
        conn.execute(s.insert(), rows)
    return len(rows)


def copy_run_results(
    engine: Engine,
    source_run_id: str,
    target_run_id: str,
    *,
    source_dag_id: str | None = None,
    target_dag_id: str | None = None,
) -> dict[str, int]:
    """Copy every successful result of one run into another (like InferenceX `/reuse-sweep-run`).

    The target run must exist (the DAG's start_run created it); it is marked `reused_from_run_id`.
    Returns counts of copied groups, points, evals and samples. Idempotent.
    """
    with write_transaction(engine) as conn:
        src = _run_pk(conn, source_run_id, source_dag_id)
        dst = _run_pk(conn, target_run_id, target_dag_id)
        if src == dst:
            raise ValueError("source and target run are the same")
        counts = copy_results(conn, source_run_pk=src, target_run_pk=dst)
        conn.execute(Run.tbl().update().where(Run.tbl().c.id == dst).values(reused_from_run_id=src))
    return counts


def copy_latest(
    conn: Connection,
    *,
    target_run_pk: int,
    target_group_pk: int,
    recipe_fingerprint: str,
    image_digest_or_tag: str,
    isl: int,
    osl: int,
    concs: Iterable[int],
    eval_concs: Iterable[int] = (),
    task: str = "gsm8k",
    backend: str | None = None,
) -> dict[str, int]:
    """Copy the newest successful result of each reused point/eval into the target run's group.

    Called when the DAG skips finished work, so the new run's report and summary still show every point
    (with `reused_from_id` pointing at the measurement).
    """
    counts = {"points": 0, "evals": 0, "samples": 0}
    for model, key, wanted, extra in (
        (BenchmarkResult, ("run_pk", "group_pk", "isl", "osl", "conc"), set(concs), {"isl": isl, "osl": osl}),
        (EvalResult, ("run_pk", "group_pk", "task", "conc"), set(eval_concs), {"task": task}),
    ):
        t = model.tbl()
        for conc in sorted(wanted):
            stmt = (
                select(t)
                .where(t.c.status == "ok", t.c.recipe_fingerprint == recipe_fingerprint, t.c.conc == conc,
                       _image_filter(t, image_digest_or_tag), t.c.run_pk != target_run_pk,
                       *(t.c[k] == v for k, v in extra.items()))
                .order_by(t.c.measured_at.desc(), t.c.id.desc())
                .limit(1)
            )
            if backend:
                stmt = stmt.where(t.c.engine == backend)
            row = conn.execute(stmt).mappings().first()
            if row is None:
                continue
            values = {k: v for k, v in row.items() if k not in _SKIP_COPY}
            values.update(run_pk=target_run_pk, group_pk=target_group_pk, reused_from_id=row["id"],
                          reused_from_run_pk=row["run_pk"], created_at=utcnow())
            new_pk = upsert(conn, model, values, key=key, do_nothing=True)
            if model is BenchmarkResult:
                counts["points"] += 1
            else:
                counts["evals"] += 1
                if new_pk is not None:
                    counts["samples"] += _copy_samples(conn, row["id"], new_pk)
    return counts
