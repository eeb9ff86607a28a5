"""The DAG factory: one DAG per single-node config key, one mapped chain per serve group.

Parse time does only YAML + pure planning (no DB, network or hub). The serve groups themselves are
computed at run time by the `plan` task from the config plus the trigger params, and a mapped task
group runs download → serve → warmup → benchmark → eval → teardown for each of them. Unrolled static
chains were measured at 31 s per parse cycle at fleet size; mapping keeps parsing cheap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, task_group
from airflow.sdk.definitions.param import ParamsDict

from infersweep.airflow import tasks
from infersweep.airflow.bootstrap import pool_name
from infersweep.airflow.dagspec import DagSpec, dag_specs
from infersweep.airflow.notify import InfersweepNotifier
from infersweep.airflow.params import build_params
from infersweep.airflow.payloads import WorkItem
from infersweep.airflow.retry import FailureClassRetryPolicy
from infersweep.airflow.settings import AirflowSettings
from infersweep.config.sweep import Sweep

START_DATE = datetime(2026, 1, 1, tzinfo=UTC)


def build_sweep_dag(spec: DagSpec, settings: AirflowSettings, *, source: str | Path | None = None) -> DAG:
    """One sweep DAG for one config key. `source` is the config file (sweep or master file) the key comes
    from: the run's plan task loads that file alone, so another broken file cannot fail this DAG's runs."""
    key = spec.dag_id
    node_kwargs: dict[str, Any] = {"pool": pool_name(spec.runner)}
    if spec.pool_slots > 1:
        # A multinode group holds several nodes: its tasks take as many of the label's slots (at least the
        # smallest group's node count), so the pool does not run more chains than the nodes can hold.
        node_kwargs["pool_slots"] = spec.pool_slots
    if settings.celery_queues:
        node_kwargs["queue"] = spec.runner
    default_args = {
        "retries": 3,
        "retry_delay": timedelta(seconds=15),
        "retry_policy": FailureClassRetryPolicy(),
        # A chain's later tasks outrank its serve: with more groups than nodes, the groups holding a node
        # (warmup → benchmark → eval → stop) must not queue behind serves that will only reschedule. Airflow's
        # default ("downstream") gives serve the highest weight of the chain, which starved the holders in the
        # soak (perf/soak.py).
        "weight_rule": "upstream",
    }
    # Alerts on a failed run, when the sweep file asks for them (`notify:`); default off, no callback at all.
    notify = spec.notify if spec.notify is not None and spec.notify.wants("failure") else None
    with DAG(
        dag_id=key,
        schedule=spec.schedule,  # None: manual/REST triggers only
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        default_args=default_args,
        tags=list(spec.tags),
        doc_md=spec.doc_md,
        render_template_as_native_obj=True,
        on_failure_callback=InfersweepNotifier(notify=notify) if notify is not None else None,
    ) as dag:

        @task_group(group_id="serve_group")
        def serve_group(work: WorkItem) -> None:
            fetched = tasks.download(work)
            served = tasks.serve.override(**node_kwargs)(work)
            warmed = tasks.warmup.override(**node_kwargs)(served)
            measured = tasks.benchmark.override(**node_kwargs)(served)
            evaluated = tasks.evaluate.override(**node_kwargs)(served)
            stopped = tasks.stop_task()(served)
            fetched >> served
            warmed >> measured >> evaluated >> stopped

        planned = tasks.plan(key, str(source) if source is not None else None)
        chains = serve_group.expand(work=planned)
        # finalize always runs (ALL_DONE) and emits the results asset; the verdict after it decides the run's state.
        chains >> tasks.finalize(key) >> tasks.verdict(
            spec.notify.model_dump(mode="json") if spec.notify is not None else None)
    # The trigger params are set once the tasks exist: Airflow deep-copies a DAG's params into every operator
    # it creates (4 copies each), which was most of the parse time at fleet size. Tasks need no copy: at run
    # time the params are merged from the DAG, the task and the run conf, and the form and REST validation
    # read them from the DAG.
    dag.params = ParamsDict(build_params(
        seq_lens=spec.seq_lens, tps=spec.tps, eps=spec.eps, concs=spec.concs,
        default_engine=spec.engine, eval_enabled=spec.eval_enabled, adaptive=spec.adaptive, pps=spec.pps, dcps=spec.dcps, pcps=spec.pcps,
    ))
    return dag


def build_dags(sweep: Sweep, settings: AirflowSettings | None = None) -> dict[str, DAG]:
    """All sweep DAGs for a loaded sweep: one per single-node config key (tests and the demo; the DAG files
    go through `infersweep.airflow.dagfiles`, one source per file)."""
    settings = settings or AirflowSettings.from_env()
    return {spec.dag_id: build_sweep_dag(spec, settings) for spec in dag_specs(sweep)}
