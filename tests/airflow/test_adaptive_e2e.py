"""Point policies through the DAG (issue 19): dag.test() runs with `adaptive=frontier` (every ladder point
measured or skipped with a reason, decisions in the store and the task log), `adaptive=slo` (bisection, the
max goodput under SLO), and `repeats` (n runs per point on one server, intervals across them)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from infersweep.store.db import get_engine
from infersweep.store.models import BenchmarkResult, Run
from infersweep.store.sweep_state import run_decisions
from tests.airflow.harness import AirflowHome, sim_sweep

KEY = "llama-adaptive-sim"
LADDER = [1, 2, 4, 8, 16, 32]


def _sweep(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(sim_sweep(KEY, isl=512, osl=64, nodes=["a0"], points=[
        f"{{ tp: {tp}, conc-list: {LADDER} }}" for tp in (1, 2, 4)],
        sim_yaml="{ time-scale: 40 }", bench_yaml="{ prompts-per-conc: 2, warmups-per-conc: 1 }")
        # A point budget (15 of 18) makes a skip certain: on this small sweep the wall-clock noise of the
        # time-scaled simulator often leaves no point provably dominated, and the run must still skip something.
        + "adaptive:\n  tolerance: 0.01\n  max-points: 15\n  slo: { p99-ttft-ms: 400, median-tpot-ms: 12 }\n")
    return path


def _home(tmp_path: Path) -> tuple[str, AirflowHome]:
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    home = AirflowHome(path=tmp_path / "airflow", configs=str(_sweep(tmp_path)), results_url=url,
                       work_dir=tmp_path / "work")
    home.migrate()
    return url, home


def _rows(url: str, run_id: str) -> list[Any]:
    engine = get_engine(url)
    b, r = BenchmarkResult.tbl(), Run.tbl()
    with engine.connect() as conn:
        return list(conn.execute(select(b).join(r, r.c.id == b.c.run_pk).where(r.c.run_id == run_id)).mappings())


@pytest.mark.e2e
def test_adaptive_frontier_search_through_the_dag(tmp_path: Path) -> None:
    url, home = _home(tmp_path)
    env_level = {"AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
    home_env = home.env
    home.env = lambda: {**home_env(), **env_level}  # type: ignore[method-assign]

    # Every ladder point gets exactly one decision, measured or skipped with a reason.
    proc = home.start(KEY, {"adaptive": "frontier"})
    out, _ = proc.communicate(timeout=900)
    result = next(json.loads(line.removeprefix("DAGTEST-RESULT ")) for line in out.splitlines()
                  if line.startswith("DAGTEST-RESULT "))
    assert result["state"] == "success", out[-4000:]
    decisions = [d for d in run_decisions(get_engine(url), dag_id=KEY, run_id=result["run_id"])
                 if d["policy"] == "adaptive"]
    per_point = {(d["group_id"], d["conc"]): d for d in decisions if d["conc"] > 0}
    groups = {d["group_id"] for d in decisions}
    assert len(groups) == 3
    assert set(per_point) == {(g, c) for g in groups for c in LADDER}
    rows = _rows(url, result["run_id"])
    assert len(rows) == sum(d["action"] == "measure" for d in per_point.values()) < len(per_point)
    skipped = [d for d in per_point.values() if d["action"] == "skip"]
    assert skipped and all(d["reason"] for d in skipped)
    assert all(("frontier" in d["reason"]) or ("dominated" in d["reason"]) or ("budget" in d["reason"])
               for d in skipped)
    # The points the policy measured are stored, each with intervals from the within-run bootstrap.
    assert all(row["intervals"] and "tput_per_gpu" in row["intervals"] for row in rows if row["status"] == "ok")
    assert "adaptive" in out and "skip" in out  # the decisions are in the task log too
    # ... and in the run summary (finalize's log and the verdict's note).
    assert f"adaptive: measured {len(rows)} of {len(per_point)} ladder points" in out


@pytest.mark.e2e
def test_slo_search_with_repeats_through_the_dag(tmp_path: Path) -> None:
    url, home = _home(tmp_path)
    result = home.run(KEY, {"adaptive": "slo", "repeats": "2", "tp": [1]})
    assert result["state"] == "success", result
    decisions = [d for d in run_decisions(get_engine(url), dag_id=KEY, run_id=result["run_id"]) if d["policy"] == "slo"]
    measured = [d["conc"] for d in decisions if d["action"] == "measure" and d["conc"] > 0]
    assert 1 <= len(measured) <= 3 + 2  # log2(6) + 2
    [summary] = [d for d in decisions if d["conc"] == 0]
    assert "max goodput under SLO" in summary["reason"] or "no concurrency meets the SLO" in summary["reason"]
    rows = _rows(url, result["run_id"])
    assert sorted(r["conc"] for r in rows) == sorted(measured)
    for row in rows:
        assert len(row["repeats"]) == 2
        assert row["intervals"]["tput_per_gpu"]["method"] == "student-t"
        lo, hi = row["intervals"]["tput_per_gpu"]["lo"], row["intervals"]["tput_per_gpu"]["hi"]
        assert lo <= row["tput_per_gpu"] <= hi
