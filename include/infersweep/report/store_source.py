"""Reading report points from the results store (Postgres or SQLite, one code path).

Selectors name what to read, as on the command line:

- `dag_id/run_id`: one run of one sweep DAG;
- `run_id`: every DAG run with that Airflow run id (a nightly's `scheduled__…` spans all sweeps);
- an image tag or digest: every result measured with that image, across runs (several runs of the same
  image are repeats, which the gate uses as its noise estimate).

Only typed columns are read, plus two numbers picked out of the raw client JSON inside the database (the
node's cost per GPU-hour and the telemetry's joules per output token), never the raw JSON itself, so a
report over thousands of points stays cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Select, func, or_, select

from infersweep.faults.errors import InfersweepError
from infersweep.report.data import COST_FROM_INVENTORY, ReportPoint, clean_intervals
from infersweep.report.summary import RunSummary
from infersweep.store.models import BenchmarkResult, Run

#: BenchmarkResult columns copied onto ReportPoint under the same name.
_COLUMNS = (
    "image", "image_digest", "engine", "engine_version", "recipe_fingerprint", "config_key", "model",
    "model_prefix", "runner", "framework", "precision", "spec_decoding", "tp", "ep", "dp_attn", "pp", "gpus",
    "pools", "isl", "osl", "conc", "tput_per_gpu", "output_tput_per_gpu", "median_ttft_ms", "p99_ttft_ms",
    "median_tpot_ms", "p99_tpot_ms", "median_intvty", "median_e2el_ms", "p99_e2el_ms", "num_completed",
    "num_failed", "client_bound", "status", "failure_kind", "error", "measured_at",
)
#: Nullable columns with a neutral default on ReportPoint.
_DEFAULTS: dict[str, Any] = {
    "engine": "unknown", "config_key": "", "model": "", "runner": "", "framework": "", "precision": "",
    "tp": 1, "ep": 1, "dp_attn": False, "pp": 1, "client_bound": False,
}
_ERROR_CAP = 2000
#: Where the benchmark step stores them in the raw client JSON (a JSON path, extracted by the database).
_RAW_COST = ("infersweep", "cost_per_gpu_hour")
_RAW_JOULES = ("infersweep", "energy", "joules_per_token")


class SelectorNotFound(InfersweepError, LookupError):
    """A run/image selector matched nothing in the store."""

    kind = "config_error"
    transient = False


def _base_query() -> Select[Any]:
    cols = [getattr(BenchmarkResult, c) for c in _COLUMNS]
    started = func.coalesce(Run.started_at, Run.created_at).label("run_started_at")
    extras = (
        BenchmarkResult.intervals,
        BenchmarkResult.raw[_RAW_COST].as_float().label("cost_per_gpu_hour"),
        BenchmarkResult.raw[_RAW_JOULES].as_float().label("joules_per_token"),
    )
    return (
        select(*cols, *extras, Run.dag_id, Run.run_id, started, BenchmarkResult.run_pk)
        .join(Run, Run.id == BenchmarkResult.run_pk)
        .order_by(Run.dag_id, Run.run_id, BenchmarkResult.isl, BenchmarkResult.osl, BenchmarkResult.conc)
    )


def _to_point(row: Any) -> ReportPoint:
    data = dict(row._mapping)
    data.pop("run_pk", None)
    for key, default in _DEFAULTS.items():
        if data.get(key) is None:
            data[key] = default
    data["status"] = "ok" if data.get("status") == "ok" else "failed"
    if data.get("error"):
        data["error"] = data["error"][:_ERROR_CAP]
    data["intervals"] = clean_intervals(data.get("intervals"))
    cost, jpt = data.get("cost_per_gpu_hour"), data.get("joules_per_token")
    # Not validated below, so the raw JSON's numbers are checked here: a cost is positive and finite.
    data["cost_per_gpu_hour"] = float(cost) if cost is not None and math.isfinite(cost) and cost > 0 else None
    data["cost_source"] = COST_FROM_INVENTORY if data["cost_per_gpu_hour"] is not None else None
    data["joules_per_token"] = float(jpt) if jpt is not None and math.isfinite(jpt) else None
    # The columns are typed by the schema already; skipping re-validation makes loading ~5x faster at
    # fleet size (tens of thousands of rows for a gate with history).
    return ReportPoint.model_construct(**data)


def _fetch(engine: Engine, query: Select[Any]) -> list[ReportPoint]:
    with engine.connect() as conn:
        return [_to_point(r) for r in conn.execute(query)]


@dataclass(frozen=True)
class RunRef:
    """A run row's identity."""

    pk: int
    dag_id: str
    run_id: str

    @property
    def label(self) -> str:
        """`dag_id/run_id`."""
        return f"{self.dag_id}/{self.run_id}"


def find_runs(engine: Engine, selector: str) -> list[RunRef]:
    """Runs matching `dag_id/run_id` exactly, else every run whose run id is `selector`."""
    with engine.connect() as conn:
        if "/" in selector:
            dag_id, _, run_id = selector.partition("/")
            rows = conn.execute(select(Run.id, Run.dag_id, Run.run_id).where(Run.dag_id == dag_id, Run.run_id == run_id))
            found = [RunRef(r.id, r.dag_id, r.run_id) for r in rows]
            if found:
                return found
        rows = conn.execute(select(Run.id, Run.dag_id, Run.run_id).where(Run.run_id == selector))
        return [RunRef(r.id, r.dag_id, r.run_id) for r in rows]


def resolve_runs(engine: Engine, selectors: Sequence[str]) -> list[RunRef]:
    """The runs the selectors name (each must match at least one run)."""
    refs: list[RunRef] = []
    for sel in selectors:
        runs = find_runs(engine, sel)
        if not runs:
            raise SelectorNotFound(f"no run matches {sel!r} (use dag_id/run_id or an Airflow run id)")
        refs.extend(r for r in runs if r not in refs)
    return refs


def load_runs(engine: Engine, selectors: Sequence[str]) -> list[ReportPoint]:
    """Every point (failures included) of the runs the selectors name; unknown selectors raise."""
    return load_run_refs(engine, resolve_runs(engine, selectors))


def load_image(engine: Engine, image: str) -> list[ReportPoint]:
    """Every point measured with an image tag or digest (across runs)."""
    query = _base_query().where(
        or_(BenchmarkResult.image == image, BenchmarkResult.image_digest == image, Run.image_tag == image)
    )
    return _fetch(engine, query)


def load_selector(engine: Engine, selector: str) -> list[ReportPoint]:
    """Points for a run selector, else for an image; raises SelectorNotFound when neither matches."""
    if find_runs(engine, selector):
        return load_runs(engine, [selector])
    points = load_image(engine, selector)
    if not points:
        raise SelectorNotFound(f"{selector!r} matches no run (dag_id/run_id or run id) and no image tag or digest")
    return points


def latest_runs(engine: Engine, dag_ids: Sequence[str] = ()) -> list[RunRef]:
    """The newest run with results of each DAG (optionally only the given DAGs)."""
    started = func.coalesce(Run.started_at, Run.created_at)
    has_results = select(BenchmarkResult.id).where(BenchmarkResult.run_pk == Run.id).exists()
    query = select(Run.id, Run.dag_id, Run.run_id, started.label("started")).where(has_results)
    if dag_ids:
        query = query.where(Run.dag_id.in_(list(dag_ids)))
    newest: dict[str, tuple[Any, RunRef]] = {}
    with engine.connect() as conn:
        for r in conn.execute(query):
            ref = RunRef(r.id, r.dag_id, r.run_id)
            if r.dag_id not in newest or (r.started, r.id) > (newest[r.dag_id][0], newest[r.dag_id][1].pk):
                newest[r.dag_id] = (r.started, ref)
    return sorted((ref for _, ref in newest.values()), key=lambda ref: ref.dag_id)


def load_latest(engine: Engine, dag_ids: Sequence[str] = ()) -> list[ReportPoint]:
    """Every point of the newest run of each DAG: the default report."""
    refs = latest_runs(engine, dag_ids)
    if not refs:
        return []
    return _fetch(engine, _base_query().where(BenchmarkResult.run_pk.in_([r.pk for r in refs])))


def load_history(
    engine: Engine, points: Iterable[ReportPoint], *, exclude: Iterable[tuple[str, str]] = (), per_point: int = 20,
) -> list[ReportPoint]:
    """Earlier successful samples of the given points' configurations (the gate's fallback noise source).

    Excludes the runs being compared (`exclude`: (dag_id, run_id) pairs) and keeps the newest
    `per_point` samples of each point.
    """
    pts = list(points)
    keys = {p.point_key for p in pts}
    config_keys = sorted({p.config_key for p in pts})
    if not config_keys:
        return []
    skip = set(exclude)
    query = (
        _base_query()
        .where(BenchmarkResult.config_key.in_(config_keys), BenchmarkResult.status == "ok")
        .order_by(None)
        .order_by(BenchmarkResult.measured_at.desc(), BenchmarkResult.id.desc())
    )
    kept: dict[tuple[object, ...], list[ReportPoint]] = {}
    for p in _fetch(engine, query):
        if (p.dag_id, p.run_id) in skip or p.point_key not in keys:
            continue
        bucket = kept.setdefault(p.point_key, [])
        if len(bucket) < per_point:
            bucket.append(p)
    return [p for bucket in kept.values() for p in bucket]


def previous_image_run(engine: Engine, dag_id: str, run_id: str) -> RunRef | None:
    """The newest earlier run of the same DAG that used a different image and has green points.

    This is the nightly gate's baseline: "the previous image". None when there is none yet.
    """
    with engine.connect() as conn:
        head = conn.execute(
            select(Run.id, Run.image_tag, Run.image_digest, func.coalesce(Run.started_at, Run.created_at).label("started"))
            .where(Run.dag_id == dag_id, Run.run_id == run_id)
        ).first()
        if head is None:
            raise SelectorNotFound(f"no run {dag_id}/{run_id} in the results store")
        head_images = {i for i in (head.image_tag, head.image_digest) if i}
        head_images |= {
            i for i in conn.execute(
                select(BenchmarkResult.image).where(BenchmarkResult.run_pk == head.id).distinct()
            ).scalars() if i
        }
        started = func.coalesce(Run.started_at, Run.created_at)
        has_green = (
            select(BenchmarkResult.id)
            .where(BenchmarkResult.run_pk == Run.id, BenchmarkResult.status == "ok").exists()
        )
        candidates = conn.execute(
            select(Run.id, Run.dag_id, Run.run_id, Run.image_tag, Run.image_digest)
            .where(Run.dag_id == dag_id, Run.id != head.id, started <= head.started, has_green)
            .order_by(started.desc(), Run.id.desc())
        ).all()
        for c in candidates:
            images = {i for i in (c.image_tag, c.image_digest) if i}
            images |= {
                i for i in conn.execute(
                    select(BenchmarkResult.image).where(BenchmarkResult.run_pk == c.id).distinct()
                ).scalars() if i
            }
            if images and head_images and images.isdisjoint(head_images):
                return RunRef(c.id, c.dag_id, c.run_id)
    return None


def load_run_refs(engine: Engine, refs: Sequence[RunRef]) -> list[ReportPoint]:
    """Every point of the given runs."""
    if not refs:
        return []
    return _fetch(engine, _base_query().where(BenchmarkResult.run_pk.in_([r.pk for r in refs])))


def data_version(engine: Engine, refs: Sequence[RunRef]) -> tuple[int, str]:
    """(row count, newest update) of the runs' results: changes whenever a result is written."""
    if not refs:
        return (0, "")
    with engine.connect() as conn:
        count, newest = conn.execute(
            select(func.count(BenchmarkResult.id), func.max(BenchmarkResult.updated_at))
            .where(BenchmarkResult.run_pk.in_([r.pk for r in refs]))
        ).one()
    return int(count), str(newest)


def _utc(value: Any) -> datetime | None:
    # Views carry no column types on SQLite, so timestamps may come back as text.
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def run_summaries(
    engine: Engine, *, dag_id: str | None = None, limit: int = 100, runs: Iterable[tuple[str, str]] | None = None,
) -> list[RunSummary]:
    """Points green/total, evals and failures by class per run (newest first), from the store's views.

    The store's `v_run_summary` counts planned points that never produced a row (a server that did not
    boot) in the total, so "53/55 green" is honest; failures are the point-level classes of
    `v_failure_breakdown`. `runs` restricts the result to those (dag_id, run_id) pairs.
    """
    from infersweep.store import views

    wanted = set(runs) if runs is not None else None
    rows = views.run_summary(engine, dag_id=dag_id, limit=limit if wanted is None else 1_000_000)
    if wanted is not None:
        rows = [r for r in rows if (r["dag_id"], r["run_id"]) in wanted]
    failures: dict[int, dict[str, int]] = {}
    if rows:
        pks = {r["run_pk"] for r in rows}
        for f in views.failure_breakdown(engine, dag_id=dag_id):
            if f["source"] == "point" and f["run_pk"] in pks:
                failures.setdefault(f["run_pk"], {})[f["failure_kind"]] = int(f["n"])
    return [
        RunSummary(
            dag_id=r["dag_id"], run_id=r["run_id"], engine=r["engine"] or "unknown",
            images=tuple(i for i in (r["image_tag"],) if i), started_at=_utc(r["started_at"] or r["logical_date"]),
            total=int(r["points_total"] or 0), green=int(r["points_ok"] or 0), failures=failures.get(r["run_pk"], {}),
            evals_total=int(r["evals_total"] or 0), evals_passed=int(r["evals_passed"] or 0),
            not_executed={kind: int(v.get("jobs", 0)) for kind, v in (r["not_executed"] or {}).items()},
        )
        for r in rows
    ]
