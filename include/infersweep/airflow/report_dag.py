"""The report DAG: scheduled on the results asset every sweep run emits.

It rebuilds the HTML report for the run that just finished and runs the regression gate against the
previous image of the same sweep. A regression fails this DAG's run (not the sweep's), so the nightly
view shows red where performance dropped, and alerts when the sweep file's `notify:` asks for it.
"""

from __future__ import annotations

from airflow.sdk import DAG, get_current_context, task

from infersweep.airflow import steps
from infersweep.airflow.assets import RESULTS_ASSET
from infersweep.airflow.factory import START_DATE
from infersweep.airflow.payloads import GateOutcome, SweepRunRef

REPORT_DAG_ID = "infersweep_report"


@task
def report_and_gate() -> GateOutcome:
    """Build the report for each triggering sweep run and gate it against the previous image."""
    ctx = get_current_context()
    events = ctx.get("triggering_asset_events") or {}
    runs: list[SweepRunRef] = []
    for asset_events in events.values():
        for event in asset_events:
            extra = dict(getattr(event, "extra", {}) or {})
            if extra.get("run_id") and extra.get("dag_id"):
                runs.append(SweepRunRef(dag_id=str(extra["dag_id"]), run_id=str(extra["run_id"])))
    return steps.report_and_gate(runs)


def build_report_dag() -> DAG:
    """The asset-scheduled report/regression DAG."""
    with DAG(
        dag_id=REPORT_DAG_ID,
        schedule=[RESULTS_ASSET],
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        # Every DAG is created paused by default; this one only reacts to the sweeps' results assets, so paused
        # it would silently start no report runs until someone found and unpaused it.
        is_paused_upon_creation=False,
        tags=["infersweep", "report"],
        doc_md="Builds the infersweep report and runs the regression gate after every sweep run.",
    ) as dag:
        report_and_gate()
    return dag
