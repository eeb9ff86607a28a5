"""A Celery app for the queue-routing test: one task that reports which worker ran it."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("infersweep_probe", broker=os.environ["PROBE_BROKER"], backend=os.environ["PROBE_BACKEND"])
app.conf.update(task_default_queue="default", worker_prefetch_multiplier=1, task_acks_late=True,
                broker_connection_retry_on_startup=True)


@app.task(name="probe.where")
def where(task_id: str) -> dict[str, str]:
    """Which worker (and so which queue) this Airflow task's message landed on."""
    return {"task_id": task_id, "worker": os.environ["PROBE_WORKER"]}
