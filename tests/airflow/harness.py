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
    #: Seconds between lease pokes: 1 keeps tests fast; the soak uses the product default (10).
    lease_poke_s: float = 1.0

    def dags_folder(self) -> Path:
        """A private copy of the project's DAG files: the generated sweep files are written next to
        infersweep_dags.py, and two tests (or test runs) with different configs must not rewrite each other's."""
        folder = self.path / "dags"
        if not folder.is_dir():
            folder.mkdir(parents=True)
            for src in (ROOT / "dags").glob("*.py"):
                (folder / src.name).write_text(src.read_text())
        return folder

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "AIRFLOW_HOME": str(self.path),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder()),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.path / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "INFERSWEEP_CONFIGS": self.configs,
            "INFERSWEEP_DB_URL": self.results_url,
            "INFERSWEEP_WORK_DIR": str(self.work_dir),
            "INFERSWEEP_LEASE_POKE_S": str(self.lease_poke_s),
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
    """The DAGTEST-RESULT of a `start`ed run. On timeout the dag.test process is killed (a run left going
    would keep starting servers against a database the caller is about to drop), then TimeoutExpired."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=60)
        raise
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
            if ("sim" in cmd and ("serve" in cmd or "router" in cmd)
                    and p.environ().get("INFERSWEEP_WORK_DIR") == str(work_dir)):
                found.append(cmd)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def sim_sweep(key: str, *, isl: int, osl: int, points: list[str], nodes: list[str], schedule: str | None = None,
              image_pattern: str | None = None, eval_yaml: str = "{ enabled: false }",
              sim_yaml: str = "{ time-scale: 20 }", bench_yaml: str = "{ prompts-per-conc: 2, warmups-per-conc: 1 }") -> str:
    """A one-key sweep file for Llama-3.1-8B on simulated H100 nodes (points: search-space flow maps)."""
    lines = [
        "sweep: test", "engine: sim", f"schedule: {schedule!r}" if schedule else "schedule: null",
        *([f'image-tag-pattern: "{image_pattern}"'] if image_pattern else []),
        "entries:", f"  {key}:", "    image: vllm/vllm-openai:v0.11.0", "    model: meta-llama/Llama-3.1-8B-Instruct",
        "    model-prefix: llama3.1-8b", "    runner: sim-h100", "    precision: bf16", "    framework: vllm",
        "    multinode: false", "    scenarios:", "      fixed-seq-len:", f"      - isl: {isl}", f"        osl: {osl}",
        "        search-space:", *(f"        - {p}" for p in points),
        "inventory:", "  sim-h100:",
        *(f"  - {{ name: {n}, gpus: 8, gpu-memory-gb: 80, gpu-profile: h100 }}" for n in nodes),
        f"eval: {eval_yaml}", f"sim: {sim_yaml}", f"bench: {bench_yaml}",
    ]
    return "\n".join(lines) + "\n"
