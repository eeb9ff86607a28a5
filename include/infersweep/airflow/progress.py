"""Progress a person can follow while `dag.test()` runs a sweep in the demo: one line per serve group each time it
moves (`serve → benchmark 3/4 → eval`), instead of `dag.test()`'s "No tasks to run" warning every second.

The lines come from the results store (the rows the tasks write as they go, read through
`infersweep.store.status`, the same view `infersweep status` prints), polled from a thread: `dag.test()` runs
the tasks in this process and offers no callback per task state.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from types import TracebackType

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from infersweep.store.db import StoreConfigError
from infersweep.store.models import utcnow
from infersweep.store.status import GroupStatus, RunStatus, load_status

#: The logger of `DAG.test()`'s scheduling loop, which warns "No tasks to run. unrunnable tasks: {…}" once a
#: second while every remaining task waits (a serve rescheduled until a node is free, a retry's delay).
DAG_TEST_LOGGER = "airflow.sdk.definitions.dag"
UNRUNNABLE_PREFIX = "No tasks to run"


class UnrunnableTasksFilter(logging.Filter):
    """Drops `dag.test()`'s "No tasks to run. unrunnable tasks" warnings (the progress lines say what waits)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(UNRUNNABLE_PREFIX)


@contextlib.contextmanager
def quiet_unrunnable_warnings() -> Iterator[UnrunnableTasksFilter]:
    """Filter the warning on `dag.test()`'s own logger for the duration of the block only: a scheduler or
    another `dag.test()` user keeps seeing it."""
    logger = logging.getLogger(DAG_TEST_LOGGER)
    flt = UnrunnableTasksFilter()
    logger.addFilter(flt)
    try:
        yield flt
    finally:
        logger.removeFilter(flt)


def _clock(seconds: float | None) -> str:
    s = round(seconds or 0)
    return f"{s // 60:2d}:{s % 60:02d}"


def group_line(run: RunStatus, group: GroupStatus) -> str:
    """`[ 0:31] 4096/256 tp1 (87267e7495aa) on sim-h100-0: serve → benchmark 3/4` (time since the run began)."""
    node = f" on {group.node}" if group.node else ""
    return f"demo:   [{_clock(run.elapsed_s)}] {group.label} ({group.group_id}){node}: {group.trail}"


class ProgressPrinter:
    """Prints a line for each serve group of `dag_id`'s run (the first one recorded at or after `since`) whenever
    its trail changes; groups still `planned` are not printed. `poll()` does one read (tests drive it
    directly); as a context manager it polls every `interval_s` from a thread, and once more on exit."""

    def __init__(self, dag_id: str, *, engine: Callable[[], Engine], since: datetime | None = None,
                 write: Callable[[str], None] = print, interval_s: float = 0.5) -> None:
        self.dag_id = dag_id
        self.since = since or utcnow()
        self._engine = engine
        self._write = write
        self._interval_s = interval_s
        self._run_id: str | None = None
        self._shown: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.error: str | None = None

    def poll(self) -> list[str]:
        """Read the run's groups once; the lines of the groups that moved since the last poll (also written)."""
        with self._lock:
            try:
                status = load_status(self._engine(), dag_id=self.dag_id, run_id=self._run_id, running_only=False,
                                     since=None if self._run_id else self.since)
            except (StoreConfigError, SQLAlchemyError) as exc:
                # The store may not exist yet (the plan task creates it) or be mid-migration: next poll.
                self.error = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                return []
            self.error = None
            if not status.runs:
                return []
            run = status.runs[0]
            lines = []
            if self._run_id is None:
                self._run_id = run.run_id
            for group in run.groups:
                if group.stage != "planned" and self._shown.get(group.group_id) != group.trail:
                    self._shown[group.group_id] = group.trail
                    lines.append(group_line(run, group))
                self._shown.setdefault(group.group_id, group.trail)
        for line in lines:
            self._write(line)
        return lines

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.poll()

    def __enter__(self) -> ProgressPrinter:
        self._thread = threading.Thread(target=self._loop, name=f"progress-{self.dag_id}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.poll()  # the final state (a group's "done"), whatever the thread last saw
        if self.error is not None:
            self._write(f"demo:   (progress unavailable: {self.error})")
