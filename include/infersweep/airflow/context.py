"""Run identity and shared helpers for the task bodies (no Airflow imports: testable in isolation)."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infersweep.airflow.settings import AirflowSettings
from infersweep.fsnames import safe_filename
from infersweep.store.api import ResultStore, trigger_kind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    """Who is running: the DAG run, the task try and its params."""

    dag_id: str
    run_id: str
    run_type: str = "manual"
    logical_date: str | None = None
    task_id: str = ""
    try_number: int = 1
    map_index: int = -1
    #: How often this try was rescheduled so far (a serve waiting for a node); drives the poke backoff.
    reschedules: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def trigger_kind(self) -> str:
        """manual / scheduled / backfill / api (the store's vocabulary)."""
        return trigger_kind(self.run_type.split(".")[-1].lower())

    @property
    def logical_day(self) -> datetime | None:
        return datetime.fromisoformat(self.logical_date) if self.logical_date else None


def open_store(rc: RunContext, settings: AirflowSettings | None = None) -> ResultStore:
    """The run's result store; the spool lives in the work dir so a crash never loses a result."""
    settings = settings or AirflowSettings.from_env()
    spool = settings.work_dir / "spool" / f"{safe_filename(rc.dag_id)}__{safe_filename(rc.run_id)}.jsonl"
    return ResultStore(dag_id=rc.dag_id, run_id=rc.run_id, spool_path=spool)


@contextlib.contextmanager
def recorded_attempt(
    store: ResultStore, rc: RunContext, *, group_id: str | None = None, node: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Record this task try in the attempts table: success, or failed with its failure class.

    A reschedule (waiting for a node lease) is not a failed try, so it is recorded as `waiting`; a group the
    adaptive policy skipped before serving (`GroupSkipped`) is recorded as `skipped`.
    """
    started = datetime.now(UTC)
    info: dict[str, Any] = {"node": node}
    try:
        yield info
    except BaseException as exc:
        status = {"AirflowRescheduleException": "waiting", "GroupSkipped": "skipped"}.get(type(exc).__name__, "failed")
        store.record_attempt(
            task_id=rc.task_id, try_number=rc.try_number, map_index=rc.map_index, status=status,
            group_id=group_id, node=info.get("node"), error=exc if status == "failed" else None,
            log_ref=info.get("log_ref"), started_at=started, ended_at=datetime.now(UTC),
        )
        raise
    store.record_attempt(
        task_id=rc.task_id, try_number=rc.try_number, map_index=rc.map_index, status="success",
        group_id=group_id, node=info.get("node"), log_ref=info.get("log_ref"), started_at=started,
        ended_at=datetime.now(UTC),
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A free TCP port on this machine (local backends: several servers share one host)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
