"""Run sweep DAGs end to end with dag.test() in child interpreters, each with its own Airflow home."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("dagtest_runner.py")


@dataclass
class AirflowHome:
    """An isolated Airflow (SQLite metadata, migrated once) pointed at one sweep config and results DB."""

    path: Path
    configs: str
    results_url: str
    work_dir: Path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "AIRFLOW_HOME": str(self.path),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.path / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "INFERSWEEP_CONFIGS": self.configs,
            "INFERSWEEP_DB_URL": self.results_url,
            "INFERSWEEP_WORK_DIR": str(self.work_dir),
            "INFERSWEEP_LEASE_POKE_S": "1",
            "HF_HUB_OFFLINE": "1",
        })
        return env

    def migrate(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=self.env(), check=True,
                       capture_output=True, timeout=600)

    def start(self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None) -> subprocess.Popen:
        args = [sys.executable, str(RUNNER), dag_id, json.dumps(conf or {}), logical_date or ""]
        return subprocess.Popen(args, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run(self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: str | None = None,
            timeout: float = 900) -> dict[str, Any]:
        return finish(self.start(dag_id, conf, logical_date), timeout)


def finish(proc: subprocess.Popen, timeout: float = 900) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    for line in out.splitlines():
        if line.startswith("DAGTEST-RESULT "):
            return dict(json.loads(line.removeprefix("DAGTEST-RESULT ")))
    raise AssertionError(f"dag.test did not report (exit {proc.returncode}):\n{out[-6000:]}")


def sim_servers_running(work_dir: Path) -> list[str]:
    """Command lines of this test's simulated-engine servers still alive (a teardown that leaked one)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(p.info.get("cmdline") or [])
            if "sim" in cmd and "serve" in cmd and p.environ().get("INFERSWEEP_WORK_DIR") == str(work_dir):
                found.append(cmd)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
