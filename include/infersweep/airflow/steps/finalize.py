"""finalize (a sweep run's last task), the report DAG's step, and the demo's closing summary."""

from __future__ import annotations

import logging
from typing import Any

from infersweep.airflow.context import RunContext, open_store
from infersweep.airflow.payloads import GateOutcome, RunOutcome, RunReport, SweepRunRef
from infersweep.airflow.settings import AirflowSettings
from infersweep.faults.errors import ClassifiedError
from infersweep.store.api import ResultStore

log = logging.getLogger(__name__)


def finalize_run(config_key: str, rc: RunContext) -> RunOutcome:
    """Flush the spool, close the run (success iff every group finished and nothing failed), write its
    HTML report."""
    settings = AirflowSettings.from_env()
    store = open_store(rc, settings)
    if rc.params.get("dry_run"):
        return RunOutcome(status="dry_run")
    if not store.spool.path.exists() and not _run_recorded(store):
        # The plan task never recorded the run (nothing spooled, nothing in the DB): its config or run conf was
        # rejected before anything started. Closing it would invent a run row and an empty report for a run
        # that never was; failing marks the DAG run failed (this task is its leaf).
        raise ClassifiedError("config_error", f"run {rc.run_id} was rejected before anything started; the plan "
                              "task's log names the bad config or run conf and the fix")
    status = store.finish_run()
    summary = store.summary()
    failures = {str(f["failure_kind"]): int(f["n"]) for f in store.failures()}
    report_path = _write_report(rc, settings)
    log.info("run %s: %s (%s); failures by class: %s; report: %s", rc.run_id, summary.get("label"), status,
             failures, report_path)
    skipped = {kind: int(v.get("jobs", 0)) for kind, v in (summary.get("not_executed") or {}).items()}
    for kind, n in skipped.items():
        log.warning("run %s: %s: %d jobs planned, not executed", rc.run_id, kind, n)
    return RunOutcome(status=status, label=summary.get("label"), failures=failures, not_executed=skipped,
                      report=str(report_path) if report_path else None)


def _run_recorded(store: ResultStore) -> bool:
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


def report_and_gate(runs: list[SweepRunRef]) -> GateOutcome:
    """Report DAG: a report per finished sweep run plus the regression gate against the previous image; a
    regression fails the task (the report DAG's run, not the sweep's)."""
    from infersweep.report.service import report_and_gate_run

    settings = AirflowSettings.from_env()
    reports = []
    for ref in runs:
        o = report_and_gate_run(ref.dag_id, ref.run_id, out_dir=settings.work_dir / "reports")
        gate = o.get("gate") or {}
        reports.append(RunReport(dag_id=ref.dag_id, run_id=ref.run_id, report=str(o["report"]),
                                 baseline=o.get("baseline"), compare=o.get("compare"), gate=gate.get("summary"),
                                 regressions=int(gate.get("regressions") or 0), regressed=bool(o.get("regressed"))))
        log.info("%s/%s: report %s, baseline %s", ref.dag_id, ref.run_id, o["report"], o.get("baseline"))
    regressed = [r for r in reports if r.regressed]
    if regressed:
        raise ClassifiedError("performance_regression",
                              "regressions vs the previous image in: " + ", ".join(f"{r.dag_id}/{r.run_id}" for r in regressed))
    return GateOutcome(runs=tuple(reports))


def demo_summary(run_ids: list[str]) -> str:
    """The demo's closing table: points green/total, headline metrics, frontier and the report path."""
    from infersweep.airflow.summary import render_demo_summary

    return render_demo_summary(run_ids, AirflowSettings.from_env())
