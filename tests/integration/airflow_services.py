
"""Start Airflow's real services (api-server, scheduler, dag-processor, triggerer) on Postgres for a test.

Each service runs under its own session (setsid) so the whole process group can be stopped; nothing is
left running after the fixture exits.

Starting a stack (migrating a fresh metadata DB, four services up and healthy, the first DAG parse) costs
over a minute on the 2-core CI box, so the test modules that need one share a single stack
(`SharedAirflow`, the `shared_airflow` fixture of tests/integration/conftest.py): each module declares its
sweep files and sim faults as a `StackPart`, all of them are in the stack's configs folder from the start,
and each module uses its own DAG ids.
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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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

    @property
    def work_dir(self) -> Path:
        """INFERSWEEP_WORK_DIR of the services (reports, run work files)."""
        return Path(self.env["INFERSWEEP_WORK_DIR"])

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


@dataclass(frozen=True)
class StackPart:
    """What one test module needs of the shared stack: its sweep files (file name -> YAML), written into the
    stack's configs folder before the stack starts, and the sim faults its runs meet (selector -> flags, as in
    INFERSWEEP_SIM_FAULTS; given the stack's folder for `--fault-once` markers). Selectors must single out
    that module's servers (e.g. "tp=N" of a TP only its sweep runs): the environment is the whole stack's."""

    configs: dict[str, str]
    sim_faults: Callable[[Path], dict[str, list[str]]] | None = None


class SharedAirflow:
    """One Airflow stack for every test module that declares a StackPart, started on first use.

    `close()` stops it (tests/integration/conftest.py calls it after the last test that uses it, so the
    services do not take CPU from the tests after it); a later `stack()` would start a fresh one."""

    def __init__(self, tmp: Path, parts: dict[str, StackPart]) -> None:
        self.tmp, self.parts = tmp, parts
        self._exit = ExitStack()
        self._stack: AirflowStack | None = None
        self._error: BaseException | None = None
        self._starts = 0
        self.configs = tmp / "configs"

    def stack(self) -> AirflowStack:
        if self._error is not None:  # a stack that failed to start is not retried for every test
            raise self._error
        if self._stack is None:
            self._starts += 1
            base = self.tmp / f"stack{self._starts}"
            base.mkdir()
            self.configs = base / "configs"
            self.configs.mkdir()
            faults: dict[str, list[str]] = {}
            for owner, part in self.parts.items():
                for name, text in part.configs.items():
                    path = self.configs / name
                    assert not path.exists(), f"{owner}: sweep file {name} is already another module's"
                    path.write_text(text)
                for selector, flags in (part.sim_faults(base) if part.sim_faults else {}).items():
                    assert selector not in faults, f"{owner}: fault selector {selector} is already another module's"
                    faults[selector] = flags
            extra = {"INFERSWEEP_SIM_FAULTS": json.dumps(faults)} if faults else {}
            try:
                self._stack = self._exit.enter_context(airflow_stack(base, configs=str(self.configs), extra_env=extra))
            except BaseException as exc:
                self._error = exc
                raise
        return self._stack

    def close(self) -> None:
        self._stack = None
        self._exit.close()
