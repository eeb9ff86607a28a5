"""finalize (closes a sweep run), verdict (its last task: fails the run on failed or missing points), the
report DAG's step (report + regression gate, with its alert), and the demo's closing summary."""

from __future__ import annotations

import logging
from typing import Any

from infersweep.airflow.context import RunContext, open_store
from infersweep.airflow.payloads import (
    GateOutcome,
    Regression,
    RunOutcome,
    RunReport,
    RunVerdict,
    SweepRunRef,
)
from infersweep.airflow.settings import AirflowSettings
from infersweep.config.settings import NotifySettings
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
    _leave_lease_queue(store, rc)
    summary = store.summary()
    failures = {str(f["failure_kind"]): int(f["n"]) for f in store.failures()}
    report_path = _write_report(rc, settings)
    log.info("run %s: %s (%s); failures by class: %s; report: %s", rc.run_id, summary.get("label"), status,
             failures, report_path)
    skipped = {kind: int(v.get("jobs", 0)) for kind, v in (summary.get("not_executed") or {}).items()}
    for kind, n in skipped.items():
        log.warning("run %s: %s: %d jobs planned, not executed", rc.run_id, kind, n)
    policy = policy_summary(store)
    for line in policy.get("lines", []):
        log.info("run %s: %s", rc.run_id, line)
    return RunOutcome(status=status, label=summary.get("label"), failures=failures, not_executed=skipped,
                      report=str(report_path) if report_path else None, policy=policy)


def _leave_lease_queue(store: ResultStore, rc: RunContext) -> None:
    """A run that ends while some serve still waits for nodes (failed, marked failed by hand) must not keep
    nodes earmarked for it until its waiters' TTL: nobody of this run will poll again."""
    from infersweep.store.leases import withdraw_run

    try:
        gone = withdraw_run(store.engine, rc.dag_id, rc.run_id)
    except Exception as exc:  # the waiter TTL ends them anyway
        log.warning("could not leave the lease queue: %s", type(exc).__name__)
        return
    if gone:
        log.info("run %s: withdrew %d waiting lease request(s)", rc.run_id, gone)


def policy_summary(store: ResultStore) -> dict[str, Any]:
    """What the run's point policies decided: counts per policy and action, the SLO search's results, and one
    line per skipped group (the run summary's "adaptive" part). Empty when the run measured its full ladder."""
    from infersweep.store.sweep_state import run_decisions

    decisions = run_decisions(store.engine, dag_id=store.dag_id, run_id=store.run_id)
    if not decisions:
        return {}
    counts: dict[str, dict[str, int]] = {}
    lines: list[str] = []
    for d in decisions:
        by_action = counts.setdefault(d["policy"], {})
        if d["conc"] > 0:
            by_action[d["action"]] = by_action.get(d["action"], 0) + 1
        elif d["action"] == "skip-group":
            by_action["skip-group"] = by_action.get("skip-group", 0) + 1
            lines.append(f"adaptive: group {d['group_id']} skipped: {d['reason']}")
        elif d["policy"] == "slo":
            lines.append(f"slo: group {d['group_id']}: {d['reason']}")
    for policy, by_action in counts.items():
        measured, skipped = by_action.get("measure", 0), by_action.get("skip", 0)
        lines.insert(0, f"{policy}: measured {measured} of {measured + skipped} ladder points, skipped {skipped}"
                        + (f" ({by_action['skip-group']} groups whole)" if by_action.get("skip-group") else ""))
    return {"counts": counts, "lines": lines}


def judge_run(rc: RunContext, *, triggering_user: str | None = None,
              notify: NotifySettings | None = None) -> RunVerdict:
    """The `verdict` task: judge the closed run from the store, log the reasons, write them to the DAG run's
    note, alert on nodes that never freed, and raise `RunFailed` (failing the DAG run) when it failed."""
    from infersweep.airflow.notify import deliver, stuck_alert
    from infersweep.airflow.verdict import collect_run_facts, raise_if_failed, run_verdict, set_run_note

    store = open_store(rc, AirflowSettings.from_env())
    verdict = run_verdict(collect_run_facts(store), dry_run=bool(rc.params.get("dry_run")))
    policy = policy_summary(store).get("lines", [])
    if policy:  # what the adaptive / SLO policy measured and skipped, in the run's note too
        verdict = verdict.model_copy(update={"note": "\n".join([verdict.note, *policy])})
    for line in verdict.note.splitlines():
        (log.error if verdict.failed else log.info)("%s", line)
    log.info("run note: %s", set_run_note(rc.dag_id, rc.run_id, verdict.note, triggering_user=triggering_user))
    # A failed run's alert (the DAG's on_failure_callback) already lists them.
    if verdict.stuck_nodes and notify is not None and not verdict.failed:
        deliver(notify, stuck_alert(verdict))
    raise_if_failed(verdict)
    return verdict


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
        report = RunReport(dag_id=ref.dag_id, run_id=ref.run_id, report=str(o["report"]),
                           baseline=o.get("baseline"), compare=o.get("compare"), gate=gate.get("summary"),
                           regressions=int(gate.get("regressions") or 0), regressed=bool(o.get("regressed")),
                           regressed_points=regressions_of(gate))
        reports.append(report)
        log.info("%s/%s: report %s, baseline %s", ref.dag_id, ref.run_id, o["report"], o.get("baseline"))
        if report.regressed:
            _alert_regression(report, images=(o.get("summary") or {}).get("images") or ())
    regressed = [r for r in reports if r.regressed]
    if regressed:
        raise ClassifiedError("performance_regression",
                              "regressions vs the previous image in: " + ", ".join(f"{r.dag_id}/{r.run_id}" for r in regressed))
    return GateOutcome(runs=tuple(reports))


def regressions_of(gate: dict[str, Any]) -> tuple[Regression, ...]:
    """Each failing row of a gate result (`GateResult.to_dict()`): its regressed metrics with their relative
    change and noise band, or `status` for a point that now fails."""
    from infersweep.report.gate import FAILING

    out: list[Regression] = []
    for row in gate.get("rows") or ():
        if row.get("verdict") not in FAILING:
            continue
        metrics = [(name, m) for name, m in (row.get("metrics") or {}).items() if m.get("verdict") == "regression"]
        if not metrics:
            out.append(Regression(point=str(row.get("point")), metric="status"))
        for name, m in metrics:
            rel, band = m.get("rel"), m.get("band")
            out.append(Regression(point=str(row.get("point")), metric=name,
                                  change_pct=None if rel is None else round(100 * float(rel), 2),
                                  noise_pct=None if band is None else round(100 * float(band), 2)))
    return tuple(out)


def _alert_regression(report: RunReport, *, images: Any) -> None:
    # The regression alert goes out from here: only the gate knows each regression's size and noise band.
    from infersweep.airflow.notify import deliver, notify_settings_for, regression_alert

    try:
        notify = notify_settings_for(report.dag_id)
        if notify is not None:
            deliver(notify, regression_alert(report, images=tuple(images)))
    except Exception as exc:  # an alert problem must not hide the gate's own verdict
        log.warning("regression alert for %s/%s not sent: %s", report.dag_id, report.run_id, type(exc).__name__)


def demo_summary(run_ids: list[str]) -> str:
    """The demo's closing table: points green/total, headline metrics, frontier and the report path."""
    from infersweep.airflow.summary import render_demo_summary

    return render_demo_summary(run_ids, AirflowSettings.from_env())
