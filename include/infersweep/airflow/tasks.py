"""TaskFlow tasks of a sweep DAG: each one pulls the run's identity from the Airflow context and calls its
step (`infersweep.airflow.steps`, `infersweep.airflow.planning`).

The bodies hold no logic, so every step is testable without Airflow (tests/airflow/test_steps.py) and
the DAG file stays cheap to parse. Tasks exchange `airflow.payloads` models, validated once at the edge.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import TriggerRule, get_current_context, setup, task, teardown

from infersweep.airflow import steps
from infersweep.airflow.assets import RESULTS_ASSET
from infersweep.airflow.context import RunContext
from infersweep.airflow.params import param_values
from infersweep.airflow.payloads import (
    DownloadReport,
    RunOutcome,
    RunVerdict,
    ServedGroup,
    StepOutcome,
    WorkItem,
)
from infersweep.airflow.planning import plan_run
from infersweep.airflow.steps.finalize import judge_run
from infersweep.config.settings import NotifySettings


def run_context() -> RunContext:
    """Identity of the current task try, from the Airflow context."""
    ctx = get_current_context()
    dag_run = ctx["dag_run"]
    ti = ctx["ti"]
    logical = ctx.get("logical_date")
    return RunContext(
        dag_id=dag_run.dag_id,
        run_id=dag_run.run_id,
        run_type=str(getattr(dag_run, "run_type", "manual")),
        logical_date=logical.isoformat() if logical else None,
        task_id=ti.task_id,
        try_number=int(ti.try_number or 1),
        map_index=int(getattr(ti, "map_index", -1) if getattr(ti, "map_index", None) is not None else -1),
        reschedules=int(ctx.get("task_reschedule_count") or 0),
        params=param_values(ctx["params"]),
    )


@task
def plan(config_key: str, source: str | None = None) -> list[WorkItem]:
    """Plan the serve groups for this run (config + params + reuse), record the run; one item per group."""
    return plan_run(config_key, run_context(), source=source)


@task
def download(work: WorkItem) -> DownloadReport:
    """Fetch weights (and the drafter) once per cache domain; skipped for local paths and the sim."""
    return steps.download(WorkItem.model_validate(work), run_context())


@setup
def serve(work: WorkItem) -> ServedGroup:
    """Acquire a node lease (rescheduling while none is free), start the server and wait until ready; skipped
    (with its chain) when the adaptive policy shows the group cannot reach the frontier."""
    from airflow.sdk.exceptions import AirflowSkipException

    from infersweep.airflow.policies import GroupSkipped

    try:
        return steps.serve(WorkItem.model_validate(work), run_context())
    except GroupSkipped as exc:
        raise AirflowSkipException(f"adaptive: skipped {exc}") from exc


@task
def warmup(served: ServedGroup) -> StepOutcome:
    """Untimed warm-up requests with distinct prompts."""
    return steps.warmup(ServedGroup.model_validate(served), run_context())


@task
def benchmark(served: ServedGroup) -> StepOutcome:
    """Every concurrency of the group, ascending, on this one server; resumes at the first unfinished point."""
    return steps.benchmark(ServedGroup.model_validate(served), run_context())


@task
def evaluate(served: ServedGroup) -> StepOutcome:
    """gsm8k at the group's eval concurrencies, on the same server."""
    return steps.evaluate(ServedGroup.model_validate(served), run_context())


def stop(served: ServedGroup) -> StepOutcome:
    """Stop the server, keep its log, release the lease and flush the spool. Always runs."""
    return steps.teardown(ServedGroup.model_validate(served), run_context())


def stop_task() -> Any:
    """A fresh `@teardown` task for one DAG: Airflow's teardown decorator mutates itself on first use, so
    one decorated object cannot be called in two DAGs."""
    return teardown(stop)


@task(trigger_rule=TriggerRule.ALL_DONE, outlets=[RESULTS_ASSET])
def finalize(config_key: str) -> RunOutcome:
    """Summarise the run (points green/total, failures by class) and emit the results asset."""
    rc = run_context()
    outcome = steps.finalize_run(config_key, rc)
    get_current_context()["outlet_events"][RESULTS_ASSET].extra = {"dag_id": rc.dag_id, "run_id": rc.run_id}
    return outcome


# No retries: the verdict reads what the run stored, which a retry would read again unchanged.
@task(retries=0)
def verdict(notify: dict[str, Any] | None = None) -> RunVerdict:
    """Fail the DAG run when a planned point failed or was never measured, or an eval missed its threshold;
    the reasons, by failure class, go to this log and the run's note. Runs after `finalize`."""
    dag_run = get_current_context()["dag_run"]
    return judge_run(run_context(), triggering_user=getattr(dag_run, "triggering_user_name", None),
                     notify=NotifySettings.model_validate(notify) if notify else None)
