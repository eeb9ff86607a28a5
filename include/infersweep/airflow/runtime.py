"""Task bodies of the sweep and report DAGs (the TaskFlow shells in `tasks.py` call these).

`planning` decides what a run does; `chain` runs one serve group; this module adds the run-level steps
(finalize, report) and re-exports the rest, so `tasks.py` has one import.
"""

from __future__ import annotations

import logging
from typing import Any

from infersweep.airflow.chain import benchmark, download, evaluate, serve, teardown, warmup
from infersweep.airflow.context import RunContext, open_store
from infersweep.airflow.planning import plan_run
from infersweep.airflow.settings import AirflowSettings

log = logging.getLogger(__name__)

__all__ = [
    "RunContext", "benchmark", "demo_summary", "download", "evaluate", "finalize_run", "plan_run",
    "report_and_gate", "serve", "teardown", "warmup",
]


def finalize_run(config_key: str, rc: RunContext) -> dict[str, Any]:
    """Flush the spool, close the run (success iff nothing failed) and write its HTML report."""
    settings = AirflowSettings.from_env()
    store = open_store(rc, settings)
    if rc.params.get("dry_run"):
        return {"status": "dry_run"}
    if not store.spool.path.exists() and not _run_recorded(store):
        # The plan task never recorded the run (nothing spooled, nothing in the DB): its config or run conf was
        # rejected before anything started. Closing it would invent a run row and an empty report for a run
        # that never was; failing marks the DAG run failed (this task is its leaf).
        from infersweep.faults.classify import ClassifiedError

        raise ClassifiedError("config_error", f"run {rc.run_id} was rejected before anything started; the plan "
                              "task's log names the bad config or run conf and the fix")
    status = store.finish_run()
    summary = store.summary()
    failures = store.failures()
    report_path = _write_report(rc, settings)
    log.info("run %s: %s (%s); failures by class: %s; report: %s", rc.run_id, summary.get("label"), status,
             {f["failure_kind"]: f["n"] for f in failures}, report_path)
    for kind, skipped in (summary.get("not_executed") or {}).items():
        log.warning("run %s: %s: %s jobs planned, not executed", rc.run_id, kind, skipped.get("jobs"))
    return {"status": status, "summary": _jsonable(summary), "failures": _jsonable(failures),
            "report": str(report_path) if report_path else None}


def _run_recorded(store: Any) -> bool:
    """Whether the results DB has this run (False when it has no schema yet: nothing was ever written).
    An unreachable DB raises, so the task is retried rather than taking the run for rejected."""
    from sqlalchemy import inspect

    return bool(inspect(store.engine).has_table("runs") and store.summary())


def _write_report(rc: RunContext, settings: AirflowSettings) -> Any:
    from infersweep.report.service import build_report, safe_name

    out = settings.work_dir / "reports" / safe_name(rc.dag_id) / f"{safe_name(rc.run_id)}.html"
    try:
        return build_report(out, runs=[f"{rc.dag_id}/{rc.run_id}"], title=f"infersweep: {rc.dag_id}").path
    except Exception:  # a report problem must not hide the run's own outcome
        log.exception("report for %s/%s failed", rc.dag_id, rc.run_id)
        return None


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def report_and_gate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Report DAG: a report per finished sweep run plus the regression gate against the previous image."""
    from infersweep.faults.classify import ClassifiedError
    from infersweep.report.service import report_and_gate_run

    settings = AirflowSettings.from_env()
    outcomes = [report_and_gate_run(r["dag_id"], r["run_id"], out_dir=settings.work_dir / "reports") for r in runs]
    regressed = [o for o in outcomes if o.get("regressed")]
    for o in outcomes:
        log.info("%s/%s: report %s, baseline %s", o["dag_id"], o["run_id"], o["report"], o.get("baseline"))
    if regressed:
        raise ClassifiedError("performance_regression",
                              "regressions vs the previous image in: " + ", ".join(f"{o['dag_id']}/{o['run_id']}" for o in regressed))
    return {"runs": _jsonable(outcomes)}


def demo_summary(run_ids: list[str]) -> str:
    """The demo's closing table: points green/total, headline metrics, frontier and the report path."""
    from infersweep.airflow.summary import render_demo_summary

    return render_demo_summary(run_ids, AirflowSettings.from_env())
