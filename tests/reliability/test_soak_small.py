"""Promise 8 (small): the soak of perf/soak.py at 8 serve groups on 4 simulated nodes (dag.test, results on a
fresh Postgres database): every point is stored exactly once, no attempt row is duplicated, every lease is
released and no server is left running. The 200-group soak is `perf/soak.py` (figures in docs/reliability.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.airflow.harness import sim_servers_running

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
SOAK = Path(__file__).resolve().parents[2] / "perf" / "soak.py"


def _soak_module():
    spec = importlib.util.spec_from_file_location("infersweep_perf_soak", SOAK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_small_soak_loses_and_duplicates_nothing(tmp_path: Path, rel_pg_url: str) -> None:
    soak = _soak_module()
    out = soak.soak(8, 4, [1, 2], 50.0, "dagtest", results_url=rel_pg_url, tmp=tmp_path, timeout=900)
    assert out["state"] == "success", out
    r = out["results"]
    assert (r["expected_points"], r["rows"], r["distinct_points"], r["ok"]) == (16, 16, 16, 16), r
    assert r["lost"] == 0 and r["duplicated"] == 0 and r["attempt_duplicates"] == 0, r
    assert r["groups_with_rows"] == 8
    assert r["leases"] == {"taken": 8, "still_open": 0}, r
    assert sim_servers_running(tmp_path / "work") == []
