"""The one-command demo: a whole sweep through Airflow in-process (`dag.test()`), SQLite everywhere.

Airflow reads its configuration from the environment at import time, so the demo prepares an isolated
AIRFLOW_HOME and environment first and then runs the Airflow part in a child interpreter
(`python -m infersweep.airflow.demo`), which migrates the SQLite metadata DB and runs `dag.test()` for
every DAG of the demo sweep, printing a line per serve group as it moves (`infersweep.airflow.progress`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from infersweep.airflow.settings import REPO_ROOT


def demo_env(*, work_dir: Path, configs: list[Path], engine: str | None, model: str | None) -> dict[str, str]:
    """Environment for an isolated, embedded Airflow + SQLite results store."""
    home = work_dir / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": env.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
            "INFERSWEEP_CONFIGS": ":".join(str(p) for p in configs),
            "INFERSWEEP_WORK_DIR": str(work_dir),
            "INFERSWEEP_DB_URL": env.get("INFERSWEEP_DB_URL", f"sqlite:///{work_dir / 'results.sqlite'}"),
            "INFERSWEEP_LEASE_POKE_S": env.get("INFERSWEEP_LEASE_POKE_S", "1"),
            "HF_HUB_OFFLINE": env.get("HF_HUB_OFFLINE", "1"),
        }
    )
    conf: dict[str, Any] = {}
    if engine:
        conf["engine"] = engine
    if model:
        conf["model"] = model
    env["INFERSWEEP_DEMO_CONF"] = json.dumps(conf)
    return env


def run_demo(*, configs: list[Path], work_dir: Path, engine: str | None = None, model: str | None = None) -> int:
    """Run the demo sweep end to end; returns the child's exit code (0 when every run succeeded)."""
    env = demo_env(work_dir=work_dir, configs=configs, engine=engine, model=model)
    started = time.monotonic()
    migrate = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
    )
    if migrate.returncode != 0:
        sys.stderr.write(migrate.stdout[-4000:] + migrate.stderr[-4000:])
        return migrate.returncode
    code = subprocess.run([sys.executable, "-m", "infersweep.airflow.demo"], env=env, timeout=3600).returncode
    print(f"demo: finished in {time.monotonic() - started:.0f} s (exit {code})")
    return code


def _say(line: str) -> None:
    print(line, flush=True)


def _child() -> int:
    """Inside the prepared environment: dag.test() every sweep DAG, then print the summary."""
    from infersweep.airflow import steps
    from infersweep.airflow.dagfiles import load_dagbag
    from infersweep.airflow.progress import ProgressPrinter, quiet_unrunnable_warnings
    from infersweep.airflow.report_dag import REPORT_DAG_ID
    from infersweep.store.readonly import open_readonly

    conf = json.loads(os.environ.get("INFERSWEEP_DEMO_CONF", "{}"))
    bag = load_dagbag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        for path, err in bag.import_errors.items():
            sys.stderr.write(f"{path}: {err}\n")
        return 1
    failed = 0
    run_ids: list[str] = []
    for dag_id, dag in sorted(bag.dags.items()):
        if dag_id == REPORT_DAG_ID:
            continue
        print(f"demo: running {dag_id} ...", flush=True)
        # Progress is read back from the results store, read-only, as `infersweep status` reads it.
        with quiet_unrunnable_warnings(), ProgressPrinter(dag_id, engine=open_readonly, write=_say):
            dr = dag.test(run_conf=conf)
        run_ids.append(dr.run_id)
        state = str(dr.state)
        print(f"demo: {dag_id} {dr.run_id}: {state}")
        failed += state != "success"
    print(steps.demo_summary(run_ids))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_child())
