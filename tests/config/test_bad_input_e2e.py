"""Bad input through Airflow itself (`dag.test()` with its own metadata DB, in a child interpreter): a bad form
param creates no run; a bad run-conf key and a config that broke after parsing each leave exactly one failed
DAG run (the rejected trigger) whose plan task failed once, permanently, with the message in its log, and
nothing else: no results row, no lease, no server, no spool, log or report file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from tests.airflow.harness import AirflowHome, sim_servers_running, sim_sweep
from tests.config.test_bad_input_starts_nothing import footprint

pytestmark = pytest.mark.e2e
KEY = "badinput-bf16-sim-h100-vllm"
GOOD = sim_sweep(KEY, isl=1024, osl=32, points=["{ tp: 1, conc-list: [1, 2] }"], nodes=["n0"])
BAD = GOOD.replace("conc-list: [1, 2]", "conc-start: 64, conc-end: 4")
BAD_LINE = next(i for i, line in enumerate(BAD.splitlines(), 1) if "conc-start: 64" in line)
RUNNER = Path(__file__).with_name("bad_input_runner.py")


def test_bad_trigger_and_bad_config_start_nothing_under_dag_test(tmp_path: Path) -> None:
    from infersweep.store.db import make_engine
    from infersweep.store.migrate import ensure_schema

    sweep, bad = tmp_path / "sweep.yaml", tmp_path / "bad.yaml"
    sweep.write_text(GOOD)
    bad.write_text(BAD)
    home = AirflowHome(path=tmp_path / "airflow", configs=str(sweep),
                       results_url=f"sqlite:///{tmp_path / 'results.sqlite'}", work_dir=tmp_path / "work")
    home.migrate()
    engine = make_engine(home.results_url)
    ensure_schema(engine)  # migrated up front, so "0 rows" below is a count, not a missing file
    engine.dispose()

    proc = subprocess.run(
        [sys.executable, str(RUNNER), KEY, str(sweep), str(bad), json.dumps({"tp": [3]}), json.dumps({"eval_limit": 0})],
        env=home.env(), capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BADINPUT-RESULT ")]
    assert lines, output[-6000:]
    result = json.loads(lines[-1].removeprefix("BADINPUT-RESULT "))

    # 1. A bad form param is refused before a run exists (the REST API answers 400 with this text).
    assert result["form"]["state"] is None
    assert "Invalid input for param tp: 3 is not one of [1, '1']" in result["form"]["error"]
    # 2./3. A bad run-conf key, and a config that broke after parsing: the plan fails, nothing downstream runs.
    for scenario in ("advanced", "config"):
        run = result[scenario]
        assert run["state"] == "failed", run
        assert run["tis"]["plan[-1]"] == "failed" and run["tis"]["finalize[-1]"] == "failed", run
        chain = {k: v for k, v in run["tis"].items() if k.startswith("serve_group.")}
        assert all(v in ("upstream_failed", "skipped", "None") for v in chain.values()), chain
    assert "invalid run conf: eval_limit: must be at least 1, got 0 (allowed: a value >= 1)" in output
    assert (f"{sweep}:{BAD_LINE}: {KEY}: scenarios.fixed-seq-len[0].search-space[0]: conc-start (64) is greater than "
            "conc-end (4) (allowed: conc-start <= conc-end)") in output

    # Airflow holds exactly the two rejected runs, and each plan task was tried once (permanent failure).
    with closing(sqlite3.connect(home.path / "airflow.db")) as meta:
        runs = meta.execute("SELECT run_id, state FROM dag_run WHERE dag_id = ?", (KEY,)).fetchall()
        plans = meta.execute("SELECT try_number, state FROM task_instance WHERE dag_id = ? AND task_id = 'plan'",
                             (KEY,)).fetchall()
    assert sorted(state for _, state in runs) == ["failed", "failed"], runs
    assert sorted(plans) == [(1, "failed"), (1, "failed")], plans

    # Nothing else: no results row (run, group, point, lease, log), no files besides the parse cache, no server.
    found = footprint({"url": home.results_url, "work": home.work_dir})
    assert found["tables"] >= 8 and found["rows"] == {}, found
    assert [f for f in found["files"] if not f.startswith("parse-cache/")] == [], found["files"]
    assert sim_servers_running(home.work_dir) == []
