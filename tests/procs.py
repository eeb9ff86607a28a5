"""Stopping the process groups that tests start (servers, workers, Airflow services)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable


def stop_process_groups(procs: Iterable[subprocess.Popen], *, grace_s: float = 30.0) -> None:
    """TERM every group (all at once, so their grace periods overlap), then KILL whatever outlives the grace."""
    procs = [p for p in procs if p.poll() is None]
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
