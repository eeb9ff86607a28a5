"""`dagtest_runner.py` with faults injected into this process first (dag.test runs every task in-process).

INFERSWEEP_TEST_INJECT is a JSON object; each key arms one fault:
- `estale: {"times": N, "blob": OID}`: huggingface_hub's per-blob file lock raises ESTALE (errno 116,
  "Stale file handle") the first N times the blob is locked, as an NFS-backed HF cache does.
- `retry_after_write: {"tp": T, "marker": PATH}`: the benchmark task of the tp=T group fails with a transient
  error right after every point was written (once: PATH records that it fired).
Usage: python fault_runner.py DAG_ID [CONF_JSON] [LOGICAL_DATE_ISO]
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _arm_estale(times: int, blob: str) -> None:
    import huggingface_hub.file_download as fd

    real = fd.WeakFileLock
    state = {"left": times}
    guard = threading.Lock()

    def weak_file_lock(path: Any, *args: Any, **kwargs: Any) -> Any:
        with guard:
            fire = state["left"] > 0 and blob in str(path)
            if fire:
                state["left"] -= 1
        if fire:
            print(f"FAULT-INJECTED estale {path}", flush=True)
            raise OSError(errno.ESTALE, "Stale file handle", str(path))
        return real(path, *args, **kwargs)

    fd.WeakFileLock = weak_file_lock


def _arm_retry_after_write(tp: int, marker: str) -> None:
    import importlib

    # The module, not the `benchmark` step function that `infersweep.airflow.steps` re-exports.
    step = importlib.import_module("infersweep.airflow.steps.benchmark")

    # After every point of the group is stored (the last thing the benchmark step does before it returns).
    real = step.PointMeasurer.raise_failures

    def raise_failures(self: Any) -> None:
        real(self)
        if self.served.group.tp == tp and not os.path.exists(marker):
            Path(marker).touch()
            print(f"FAULT-INJECTED retry_after_write tp={tp}", flush=True)
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer (injected after the write)")

    step.PointMeasurer.raise_failures = raise_failures  # type: ignore[method-assign]


def main() -> int:
    inject = json.loads(os.environ.get("INFERSWEEP_TEST_INJECT") or "{}")
    if "estale" in inject:
        _arm_estale(int(inject["estale"]["times"]), str(inject["estale"]["blob"]))
    if "retry_after_write" in inject:
        _arm_retry_after_write(int(inject["retry_after_write"]["tp"]), str(inject["retry_after_write"]["marker"]))
    from tests.airflow.dagtest_runner import main as run

    return run()


if __name__ == "__main__":
    sys.exit(main())
