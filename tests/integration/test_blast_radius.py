"""One broken sweep file costs only its own DAGs, under Airflow's real dag-processor on Postgres.

A configured folder holds a good sweep file and a broken one (`isl: 0`). The good file's DAG and the report
DAG are served by the API; the broken file's error is in Airflow's import-error list (what the UI's "DAG
Import Errors" banner shows) with its file, line, key and fix. A sweep file added to the folder while the
stack runs gets its DAG without a restart, and fixing the broken file clears its import error.

The stack and its configs folder are shared with the other integration modules (tests/integration/conftest.py);
good.yaml and bad.yaml are in the folder from the start, the other modules' sweep files parse cleanly.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.airflow.harness import sim_sweep
from tests.integration.airflow_services import SharedAirflow, StackPart

pytestmark = pytest.mark.integration
GOOD, BAD, LATE = "blast-good-bf16-sim-h100-vllm", "blast-bad-bf16-sim-h100-vllm", "blast-late-bf16-sim-h100-vllm"


def _pg_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _sweep(key: str, node: str, *, isl: int = 1024) -> str:
    return sim_sweep(key, isl=isl, osl=32, points=["{ tp: 1, conc-list: [1] }"], nodes=[node])


AIRFLOW_STACK = StackPart(configs={"good.yaml": _sweep(GOOD, "good-0"), "bad.yaml": _sweep(BAD, "bad-0", isl=0)})


def _wait(what: str, probe: Callable[[], Any], timeout: float, logs: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(2)
    raise AssertionError(f"{what} not seen in {timeout:.0f} s\n{logs()}")


def _import_errors(client: httpx.Client) -> list[dict[str, Any]]:
    return list(client.get("/importErrors").json()["import_errors"])


def test_a_broken_sweep_file_costs_only_its_own_dags(shared_airflow: SharedAirflow) -> None:
    if not _pg_up():
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432")
    stack = shared_airflow.stack()
    folder = shared_airflow.configs
    bad = folder / "bad.yaml"
    assert "isl: 0" in bad.read_text()
    with stack.client() as client:
        def dag_ids() -> set[str]:
            return {d["dag_id"] for d in client.get("/dags", params={"limit": 100}).json()["dags"]}

        _wait("the good DAG and the report DAG", lambda: {GOOD, "infersweep_report"} <= dag_ids(), 240, stack.logs)
        errors = _wait("the broken file's import error", lambda: _import_errors(client), 120, stack.logs)
        assert BAD not in dag_ids()
        (error,) = errors
        # The generated DAG file of bad.yaml alone, and the message names file, line, key path and the fix.
        assert "infersweep_sweeps/bad_" in error["filename"], error["filename"]
        trace = error["stack_trace"]
        assert f"{bad}:" in trace and f"{BAD}: scenarios.fixed-seq-len[0].isl" in trace, trace
        assert "(allowed: " in trace, trace

        # A sweep file added while the stack runs: the next parse of infersweep_dags.py writes its DAG file.
        (folder / "late.yaml").write_text(_sweep(LATE, "late-0"))
        _wait("the DAG of a sweep file added to the folder", lambda: LATE in dag_ids(), 240, stack.logs)

        # Fixing the broken file clears its import error and brings its DAG.
        bad.write_text(_sweep(BAD, "bad-0"))
        _wait("the fixed file's DAG", lambda: BAD in dag_ids(), 240, stack.logs)
        _wait("no import errors", lambda: not _import_errors(client), 120, stack.logs)
        assert {GOOD, LATE, "infersweep_report"} <= dag_ids()
