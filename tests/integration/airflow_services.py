
"""Start Airflow's real services (api-server, scheduler, dag-processor, triggerer) on Postgres for a test.

Each service runs under its own session (setsid) so the whole process group can be stopped; nothing is
left running after the fixture exits.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.procs import stop_process_groups

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("api-server", "scheduler", "dag-processor", "triggerer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AirflowStack:
    home: Path
    base_url: str
    env: dict[str, str]
    results_url: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def token(self) -> str:
        pw_file = self.home / "simple_auth_manager_passwords.json.generated"
        password = json.loads(pw_file.read_text())["admin"]
        r = httpx.post(f"{self.base_url}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        r.raise_for_status()
        return str(r.json()["access_token"])

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base_url}/api/v2",
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
            timeout=30,
        )

    def logs(self) -> str:
        out = []
        for name in SERVICES:
            path = self.home / f"{name}.log"
            if path.exists():
                out.append(f"--- {name} ---\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(out)


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5", autocommit=True) as c:
        c.execute(sql)


@contextmanager
def airflow_stack(tmp: Path, *, configs: str, extra_env: dict[str, str] | None = None) -> Iterator[AirflowStack]:
    """Migrate a fresh Postgres metadata DB, bootstrap pools, start the services, wait for health."""
    tag = secrets.token_hex(3)
    meta_db, results_db = f"af_meta_{tag}", f"af_results_{tag}"
    _pg_admin(f'CREATE DATABASE "{meta_db}"')
    _pg_admin(f'CREATE DATABASE "{results_db}"')
    home = tmp / "airflow"
    home.mkdir(parents=True)
    # A private dags folder (the repo's own DAG file, copied): the generated sweep DAG files of this stack's
    # configs are written beside it, not into the checkout.
    dags = tmp / "dags"
    dags.mkdir()
    shutil.copy2(ROOT / "dags" / "infersweep_dags.py", dags / "infersweep_dags.py")
    port = free_port()
    results_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{results_db}"
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg://postgres@127.0.0.1:5432/{meta_db}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__FERNET_KEY": "",
            "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(16),
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            "INFERSWEEP_CONFIGS": configs,
            "INFERSWEEP_DB_URL": results_url,
            "INFERSWEEP_WORK_DIR": str(tmp / "work"),
            "INFERSWEEP_LEASE_POKE_S": "2",
            "HF_HUB_OFFLINE": "1",
        }
    )
    env.update(extra_env or {})
    bin_dir = Path(sys.executable).parent
    stack = AirflowStack(home=home, base_url=f"http://127.0.0.1:{port}", env=env, results_url=results_url)
    try:
        subprocess.run([str(bin_dir / "airflow"), "db", "migrate"], env=env, check=True, capture_output=True,
                       timeout=300)
        subprocess.run([str(bin_dir / "infersweep"), "db", "upgrade"], env=env, check=True, capture_output=True,
                       timeout=120)
        subprocess.run([str(bin_dir / "infersweep"), "airflow", "bootstrap"], env=env, check=True,
                       capture_output=True, timeout=120)
        for name in SERVICES:
            log = (home / f"{name}.log").open("wb")
            stack.procs[name] = subprocess.Popen(
                [str(bin_dir / "airflow"), *name.split()], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while True:
            try:
                health = httpx.get(f"{stack.base_url}/api/v2/monitor/health", timeout=5).json()
                if all(health.get(k, {}).get("status") == "healthy"
                       for k in ("metadatabase", "scheduler", "triggerer", "dag_processor")):
                    break
            except (httpx.HTTPError, ValueError):
                pass
            dead = [n for n, p in stack.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"Airflow services not healthy (dead: {dead})\n{stack.logs()}")
            time.sleep(2)
        yield stack
    finally:
        stop_process_groups(stack.procs.values())
        for db in (meta_db, results_db):
            _pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
