"""The sweep run's verdict: the last task of a sweep DAG, after `finalize`, failing the DAG run when it did
not measure everything it planned.

`finalize` has to run whatever happened (ALL_DONE: it closes the run, writes the report and emits the results
asset), which made it a leaf that turned every run green. `verdict` follows it and fails the run when

* a planned point failed (counted by failure class) or was never measured (its group never served),
* an eval missed its threshold, failed, or never ran.

Points copied from an earlier run (reuse) are green, and a `dry_run` measures nothing on purpose: neither is
a failure. The reasons go to the task log and to the DAG run's note.

`collect_run_facts` reads the run from the results store; `run_verdict` is pure (tests build facts by hand);
`set_run_note` writes the note where Airflow 3 allows it (see its docstring).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from infersweep.airflow.payloads import RunVerdict
from infersweep.faults.errors import InfersweepError
from infersweep.store.api import ResultStore

log = logging.getLogger(__name__)

#: Airflow connection of the REST API the run note is written through (host = the api-server's base URL,
#: login/password = a user allowed to edit DAG runs; or no login and the password is a bearer token).
API_CONN_ENV = "INFERSWEEP_API_CONN_ID"
DEFAULT_API_CONN_ID = "infersweep_airflow_api"
#: Seconds for each REST call of the note (token, then PATCH).
NOTE_TIMEOUT_S = 10.0
#: dag.test() creates its runs with this triggering user (airflow.sdk.definitions.dag.DAG.test).
DAG_TEST_USER = "dag_test"


class RunFailed(InfersweepError, RuntimeError):
    """The sweep run did not measure everything it planned; the message lists why, by failure class."""

    kind = "run_failed"
    transient = False  # the store's record will not change on a retry


class _Facts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PointFacts(_Facts):
    """One stored point of a group."""

    conc: int
    status: str
    failure_kind: str | None = None
    reused: bool = False


class GroupFacts(_Facts):
    """One planned serve group, its stored points and its planned eval concurrencies."""

    group_id: str
    label: str = Field(description="layout and sequence lengths, for people")
    status: str
    failure_kind: str | None = None
    planned: int = Field(ge=0, description="points planned for this run (reused ones included)")
    eval_concs: tuple[int, ...] = ()
    points: tuple[PointFacts, ...] = ()


class EvalFacts(_Facts):
    """One stored eval result."""

    group_id: str
    task: str
    conc: int
    status: str
    failure_kind: str | None = None
    strict: float | None = None
    flexible: float | None = None
    threshold: float | None = None
    passed: bool | None = None


class RunFacts(_Facts):
    """What the results store knows about one sweep run, as the verdict needs it."""

    dag_id: str
    run_id: str
    recorded: bool = Field(default=True, description="False when the store has no row for the run")
    config_key: str | None = None
    status: str | None = None
    images: tuple[str, ...] = ()
    groups: tuple[GroupFacts, ...] = ()
    evals: tuple[EvalFacts, ...] = ()
    stuck_nodes: tuple[str, ...] = ()


def _counted(counts: Counter[str]) -> str:
    return ", ".join(f"{kind}×{n}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _all_green(g: GroupFacts) -> bool:
    return all(p.status == "ok" for p in g.points) and len({p.conc for p in g.points}) >= g.planned


def _eval_reasons(facts: RunFacts) -> list[str]:
    out: list[str] = []
    for e in facts.evals:
        if e.status != "ok":
            out.append(f"eval {e.task} failed ({e.failure_kind or 'unknown'}) for group {e.group_id} conc {e.conc}")
        elif e.passed is False:
            scores = [s for s in (e.strict, e.flexible) if s is not None]
            worst = f"{min(scores):.2f}" if scores else "?"
            floor = f"{e.threshold:.2f}" if e.threshold is not None else "?"
            out.append(f"eval {e.task} {worst} < {floor} (group {e.group_id} conc {e.conc})")
    measured = {(e.group_id, e.conc) for e in facts.evals}
    for g in facts.groups:
        if not _all_green(g) or g.status == "skipped":
            continue  # its evals never ran because its points failed (those reasons say why) or a policy skipped it
        missing = [c for c in g.eval_concs if (g.group_id, c) not in measured]
        if missing:
            out.append(f"eval not run for group {g.group_id} at conc {', '.join(map(str, missing))}")
    return out


def _unmeasured(g: GroupFacts) -> str:
    missing = g.planned - len({p.conc for p in g.points})
    why = {"planned": "never served", "serving": "stopped before measuring",
           "failed": f"failed{f' ({g.failure_kind})' if g.failure_kind else ''}"}.get(g.status, g.status)
    return f"group {g.group_id} {g.label} {why}: {_plural(missing, 'point')} not measured"


def run_verdict(facts: RunFacts, *, dry_run: bool = False) -> RunVerdict:
    """Judge a finished sweep run from its stored facts (pure). A run passes when every planned point has a
    green row (measured or reused) and every planned eval passed; a dry run always passes."""
    base: dict[str, Any] = {"dag_id": facts.dag_id, "run_id": facts.run_id, "config_key": facts.config_key,
                            "images": facts.images, "stuck_nodes": facts.stuck_nodes}
    if dry_run or facts.status == "dry_run":
        return RunVerdict(**base, dry_run=True, note="infersweep verdict: dry run, planned only, nothing measured")
    if not facts.recorded:
        reason = "the run was never recorded in the results store (its plan task did not run)"
        return RunVerdict(**base, reasons=(reason,), note=f"infersweep verdict: FAILED\n{reason}")
    planned = sum(max(g.planned, len({p.conc for p in g.points})) for g in facts.groups)
    points = [p for g in facts.groups for p in g.points]
    ok = [p for p in points if p.status == "ok"]
    failed = Counter(p.failure_kind or "unknown" for p in points if p.status != "ok")
    unmeasured = [g for g in facts.groups if g.planned > len({p.conc for p in g.points})]
    n_unmeasured = sum(g.planned - len({p.conc for p in g.points}) for g in unmeasured)
    reasons: list[str] = []
    if failed:
        reasons.append(f"{sum(failed.values())} of {planned} points failed: {_counted(failed)}")
    if unmeasured:
        reasons.append(f"{_plural(n_unmeasured, 'point')} not measured ("
                       + "; ".join(_unmeasured(g) for g in unmeasured) + ")")
    reasons.extend(_eval_reasons(facts))
    reused = sum(p.reused for p in ok)
    green = f"{len(ok)}/{planned} points green" + (f" ({reused} reused)" if reused else "")
    if reasons:
        note = "\n".join(["infersweep verdict: FAILED", *reasons, green])
    else:
        evals = f", {_plural(len(facts.evals), 'eval')} passed" if facts.evals else ""
        note = f"infersweep verdict: passed, {green}{evals}"
    if facts.stuck_nodes:
        note += "\nnodes never freed (lease expired): " + ", ".join(facts.stuck_nodes)
    return RunVerdict(**base, points_planned=planned, points_ok=len(ok), points_reused=reused,
                      points_failed=sum(failed.values()), points_not_measured=n_unmeasured,
                      failed_by_class=dict(failed), not_measured=tuple(_unmeasured(g) for g in unmeasured),
                      eval_failures=tuple(_eval_reasons(facts)), reasons=tuple(reasons), note=note)


def raise_if_failed(verdict: RunVerdict) -> None:
    """Raise `RunFailed` with the reasons when the verdict failed the run."""
    if verdict.failed:
        raise RunFailed(f"{verdict.dag_id}/{verdict.run_id}: " + "; ".join(verdict.reasons))


def _label(row: Any) -> str:
    layout = f"tp{row.tp or 1}" + (f" ep{row.ep}" if (row.ep or 1) > 1 else "") + (" dp-attn" if row.dp_attn else "")
    return f"({layout} {row.isl}/{row.osl})"


def collect_run_facts(store: ResultStore, *, now: datetime | None = None) -> RunFacts:
    """Read the run's groups, points, evals and expired leases from the results store (flushed first)."""
    from sqlalchemy import inspect, or_, select

    from infersweep.store.models import BenchmarkResult, EvalResult, NodeLeaseRow, Run, ServeGroupRow

    store.flush()
    engine = store.engine
    if not inspect(engine).has_table("runs"):
        return RunFacts(dag_id=store.dag_id, run_id=store.run_id, recorded=False)
    r, g, b, e, lease = (Run.tbl(), ServeGroupRow.tbl(), BenchmarkResult.tbl(), EvalResult.tbl(),
                         NodeLeaseRow.tbl())
    with engine.connect() as conn:
        run = conn.execute(select(r.c.id, r.c.config_key, r.c.status, r.c.image_tag)
                           .where(r.c.dag_id == store.dag_id, r.c.run_id == store.run_id)).first()
        if run is None:
            return RunFacts(dag_id=store.dag_id, run_id=store.run_id, recorded=False)
        groups = conn.execute(select(g).where(g.c.run_pk == run.id).order_by(g.c.id)).all()
        points = conn.execute(select(b.c.group_pk, b.c.conc, b.c.status, b.c.failure_kind, b.c.reused_from_id)
                              .where(b.c.run_pk == run.id).order_by(b.c.group_pk, b.c.conc)).all()
        evals = conn.execute(select(e.c.group_pk, e.c.task, e.c.conc, e.c.status, e.c.failure_kind, e.c.strict,
                                    e.c.flexible, e.c.threshold, e.c.passed)
                             .where(e.c.run_pk == run.id).order_by(e.c.group_pk, e.c.conc)).all()
        t = now or datetime.now(UTC)
        stuck = conn.execute(select(lease.c.node, lease.c.holder_group, lease.c.expires_at).where(
            lease.c.holder_dag_id == store.dag_id, lease.c.holder_run_id == store.run_id,
            or_(lease.c.release_reason == "expired", (lease.c.released_at.is_(None)) & (lease.c.expires_at < t)),
        ).order_by(lease.c.id)).all()
    by_pk = {row.id: row for row in groups}
    per_group: dict[int, list[PointFacts]] = {}
    for p in points:
        per_group.setdefault(p.group_pk, []).append(PointFacts(
            conc=p.conc, status=p.status, failure_kind=p.failure_kind, reused=p.reused_from_id is not None))
    images = [run.image_tag] if run.image_tag else []
    images += [row.image for row in groups if row.image and row.image not in images]
    return RunFacts(
        dag_id=store.dag_id, run_id=store.run_id, config_key=run.config_key, status=run.status,
        images=tuple(images),
        groups=tuple(GroupFacts(group_id=row.group_id, label=_label(row), status=row.status,
                                failure_kind=row.failure_kind, planned=int(row.n_points or 0),
                                eval_concs=tuple(row.eval_concs or ()), points=tuple(per_group.get(row.id, ())))
                     for row in groups),
        evals=tuple(EvalFacts(group_id=by_pk[x.group_pk].group_id, task=x.task, conc=x.conc, status=x.status,
                              failure_kind=x.failure_kind, strict=x.strict, flexible=x.flexible,
                              threshold=x.threshold, passed=x.passed) for x in evals),
        stuck_nodes=tuple(f"{s.node} (group {s.holder_group})" for s in stuck),
    )


# ----------------------------------------------------------------------------------------------- run note
def _api_base(conn: Any) -> str:
    host = str(conn.host or "").rstrip("/")
    if host.startswith(("http://", "https://")):
        return host if conn.port is None or f":{conn.port}" in host else f"{host}:{conn.port}"
    scheme = conn.schema if conn.schema in ("http", "https") else "http"
    return f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "")


def _note_via_rest(conn: Any, dag_id: str, run_id: str, note: str, timeout_s: float) -> None:
    import httpx

    base = _api_base(conn)
    with httpx.Client(timeout=timeout_s) as client:
        token = conn.password or ""
        if conn.login:
            r = client.post(f"{base}/auth/token", json={"username": conn.login, "password": conn.password})
            r.raise_for_status()
            token = str(r.json()["access_token"])
        r = client.patch(f"{base}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
                         json={"note": note}, headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()


def _note_in_process(dag_id: str, run_id: str, note: str) -> None:
    # dag.test() runs its tasks in its own process against its own metadata DB (the ORM is not blocked there,
    # unlike in a supervised worker), so the note is written the way the api-server itself writes it.
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dr = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
        dr.note = note


def set_run_note(dag_id: str, run_id: str, note: str, *, triggering_user: str | None = None,
                 timeout_s: float = NOTE_TIMEOUT_S) -> str:
    """Write the DAG run's note; returns how it was written (or why not). Never raises: the note repeats the
    task log, it must not fail the verdict.

    Airflow 3 gives tasks no way to edit their own DAG run (the Task SDK's execution API can read a run and
    trigger new ones with a note, but not change an existing run's note, and the ORM is blocked in workers).
    So the note goes through the public REST API (`PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}`) with the
    Airflow connection `INFERSWEEP_API_CONN_ID` (default `infersweep_airflow_api`). Under `dag.test()`, which
    has no api-server, it is written in-process through the ORM. Without either, the log keeps the reasons.
    """
    conn_id = os.environ.get(API_CONN_ENV) or DEFAULT_API_CONN_ID
    conn = None
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # absent connection (AirflowNotFoundException) or no Airflow at all
        log.debug("no Airflow connection %s for the run note: %s", conn_id, type(exc).__name__)
    if conn is not None and conn.host:
        try:
            _note_via_rest(conn, dag_id, run_id, note, timeout_s)
            return f"rest:{conn_id}"
        except Exception as exc:  # the status code and class only: a response may echo credentials
            status = getattr(getattr(exc, "response", None), "status_code", None)
            log.warning("run note not written through %s: %s%s", conn_id, type(exc).__name__,
                        f" (HTTP {status})" if status else "")
            return f"failed:rest:{type(exc).__name__}"
    if triggering_user == DAG_TEST_USER:
        try:
            _note_in_process(dag_id, run_id, note)
            return "orm:dag.test"
        except Exception as exc:
            log.warning("run note not written in process: %s: %s", type(exc).__name__, exc)
            return f"failed:orm:{type(exc).__name__}"
    log.info("run note not written: no Airflow connection %r for the REST API (see docs/architecture.md)", conn_id)
    return "skipped:no-connection"


def verdict_json(verdict: RunVerdict) -> str:
    """The verdict as one JSON line (the task log's machine-readable record)."""
    return json.dumps(verdict.model_dump(mode="json"), sort_keys=True)
