"""Helpers for the reliability tests: an Airflow home whose dag.test runs with injected faults, and queries."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.airflow.harness import AirflowHome

FAULT_RUNNER = Path(__file__).with_name("fault_runner.py")


@dataclass
class FaultHome(AirflowHome):
    """An `AirflowHome` whose runs go through `fault_runner.py` with extra environment (faults armed)."""

    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra_env}

    def start(self, dag_id: str, conf: dict[str, Any] | None = None,
              logical_date: str | None = None) -> subprocess.Popen:
        args = [sys.executable, str(FAULT_RUNNER), dag_id, json.dumps(conf or {}), logical_date or ""]
        return subprocess.Popen(args, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def task_instances(self, run_id: str) -> list[dict[str, Any]]:
        """Airflow's own record of the run's task instances (task_id, map_index, try_number, state)."""
        with sqlite3.connect(self.path / "airflow.db", timeout=30) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute("SELECT task_id, map_index, try_number, state FROM task_instance WHERE run_id = ?",
                                (run_id,)).fetchall()
        return [dict(r) for r in rows]


def rows(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    from infersweep.store.db import get_engine

    with get_engine(url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


def groups_by_tp(url: str, run_id: str) -> dict[int, dict[str, Any]]:
    """The run's serve groups keyed by tp (the fault tests give each group its own tp)."""
    found = rows(url, "SELECT g.id, g.group_id, g.tp, g.status, g.failure_kind, g.node FROM serve_groups g "
                      "JOIN runs r ON r.id = g.run_pk WHERE r.run_id = :r", r=run_id)
    return {g["tp"]: g for g in found}


def server_log_text(url: str, group_pk: int, source: str) -> str:
    from infersweep.store.logs import unpack_log

    found = rows(url, "SELECT content, codec FROM server_logs WHERE group_pk = :g AND source = :s",
                 g=group_pk, s=source)
    return "\n".join(unpack_log(bytes(r["content"]), r["codec"]) for r in found)
