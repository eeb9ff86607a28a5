"""Secrets never leak: canary credentials go in, a full sweep runs through Airflow, and nothing it produced
contains them.

Canaries: an `hf_…` token in HF_TOKEN, a second token in HUGGING_FACE_HUB_TOKEN, a third as the password of
the Airflow connection named by INFERSWEEP_HF_CONN_ID (the one the download step reads), and a password in
the results-DB URL. Postgres on 127.0.0.1 trusts local connections, so a password-bearing URL is accepted
and used for every read, write and download lock.

Two DAG runs through `dag.test()`:
- A: the simulated engine end to end (plan, serve, warmup, benchmark, gsm8k eval, teardown, report), with
  the results DB reached through the `infersweep_results` Airflow connection (the docker-compose path);
- B: engine `vllm-docker` with INFERSWEEP_DB_URL: the download step resolves the HF token from the Airflow
  connection, takes the Postgres download lock with the password-bearing URL, and fails (hub offline),
  so a failure message is recorded too.

Then everything is searched for every canary: both runs' task logs (dag.test prints them), every file
under the test's folder (Airflow home with its metadata DB and logs, the work dir with spool, server logs,
parse cache and HTML report, the HF cache), and every column of every row of the results DB, with stored
server logs decompressed. Controls show the search would have found a planted canary.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, select, table

from tests.airflow.harness import RUNNER, AirflowHome, sim_servers_running, sim_sweep

pytestmark = pytest.mark.e2e
KEY = "canary-bf16-sim-h100-vllm"
HF_CONN_ID = "hf_canary"


@dataclass
class CanaryHome(AirflowHome):
    """An Airflow home whose tasks see the canaries; `via_connection` moves the results DB URL from
    INFERSWEEP_DB_URL into the `infersweep_results` Airflow connection."""

    canaries: dict[str, str] = field(default_factory=dict)
    via_connection: bool = False

    def env(self) -> dict[str, str]:
        env = super().env()
        env.update({
            "HF_TOKEN": self.canaries["hf_token"],
            "HUGGING_FACE_HUB_TOKEN": self.canaries["hub_token"],
            f"AIRFLOW_CONN_{HF_CONN_ID.upper()}": json.dumps(
                {"conn_type": "generic", "login": "hf", "password": self.canaries["conn_token"]}),
            "INFERSWEEP_HF_CONN_ID": HF_CONN_ID,
            "HF_HOME": str(self.path.parent / "hf-home"),
        })
        if self.via_connection:
            env.pop("INFERSWEEP_DB_URL")
            env["AIRFLOW_CONN_INFERSWEEP_RESULTS"] = self.results_url.replace("postgresql+psycopg://", "postgres://")
        return env

    def run_logged(self, dag_id: str, conf: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """Like `run`, but also returns everything the run printed (dag.test prints the task logs)."""
        proc = subprocess.run([sys.executable, str(RUNNER), dag_id, json.dumps(conf), ""], env=self.env(),
                              capture_output=True, text=True, timeout=900)
        out = proc.stdout + proc.stderr
        for line in proc.stdout.splitlines():
            if line.startswith("DAGTEST-RESULT "):
                return json.loads(line.removeprefix("DAGTEST-RESULT ")), out
        raise AssertionError(f"dag.test did not report (exit {proc.returncode}):\n{out[-6000:]}")


@dataclass
class Scan:
    """What was searched, and where each canary was found."""

    files: int = 0
    bytes: int = 0
    rows: int = 0
    cells: int = 0
    logs: int = 0
    hits: list[str] = field(default_factory=list)

    def text(self, where: str, data: bytes | str, needles: dict[str, str]) -> None:
        raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
        self.bytes += len(raw)
        for name, value in needles.items():
            if value.encode() in raw:
                self.hits.append(f"{name} in {where}")

    def tree(self, root: Path, needles: dict[str, str]) -> None:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.files += 1
            self.text(str(path.relative_to(root)), path.read_bytes(), needles)

    def database(self, url: str, needles: dict[str, str]) -> None:
        from infersweep.store.logs import unpack_log

        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                for name in inspect(engine).get_table_names():
                    for row in conn.execute(select(table(name, *_columns(engine, name)))).mappings():
                        self.rows += 1
                        for col, value in row.items():
                            self.cells += 1
                            if isinstance(value, bytes | memoryview):
                                value = bytes(value)
                                if name == "server_logs" and col == "content":
                                    self.logs += 1
                                    value = unpack_log(value, row.get("codec") or "zlib")
                            self.text(f"{name}.{col}", value if isinstance(value, bytes | str) else
                                      json.dumps(value, default=str), needles)
        finally:
            engine.dispose()


def _columns(engine: Any, name: str) -> list[Any]:
    from sqlalchemy import column

    return [column(c["name"]) for c in inspect(engine).get_columns(name)]


def _canaries() -> dict[str, str]:
    tag = secrets.token_hex(8)
    return {
        "hf_token": f"hf_CANARYtok{tag}{secrets.token_hex(6)}",
        "hub_token": f"CANARYhub-{tag}",  # no hf_ prefix: only value-based redaction can catch it
        "conn_token": f"CANARYconn-{tag}",
        "db_password": f"CANARYdb{tag}",
    }


def test_no_canary_in_anything_a_sweep_produced(tmp_path: Path, module_pg_url: str, gsm8k_dir: Path) -> None:
    pg_url = module_pg_url  # its own database: the test counts every row
    canaries = _canaries()
    user, rest = pg_url.split("://", 1)[1].split("@", 1)
    url = f"postgresql+psycopg://{user}:{canaries['db_password']}@{rest}"
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(sim_sweep(
        # ISL 4096: the server's max-model-len (ISL + OSL + 256) must also hold gsm8k's few-shot prompt and its
        # 1176 generated tokens, or the eval fails and the verdict fails the run.
        KEY, isl=4096, osl=48, points=["{ tp: 1, conc-list: [1, 4] }"], nodes=["n0"],
        eval_yaml=f"{{ enabled: true, select: max-conc, limit: 4, data-dir: {gsm8k_dir} }}",
        sim_yaml="{ time-scale: 20, accuracy: 1.0 }"))
    home = CanaryHome(path=tmp_path / "airflow", configs=str(sweep), results_url=url, work_dir=tmp_path / "work",
                      canaries=canaries, via_connection=True)
    home.migrate()

    sim_run, sim_out = home.run_logged(KEY, {})
    assert sim_run["state"] == "success", sim_run
    home.via_connection = False
    docker_run, docker_out = home.run_logged(KEY, {"engine": "vllm-docker", "force": True, "eval": False})
    assert docker_run["tis"]["serve_group.download[0]"] == "failed", docker_run

    # The canaries were in play: results landed through the password-bearing URL, and the download step got
    # past the Airflow-connection token lookup (a missing connection fails with "could not be read").
    engine = create_engine(url)
    with engine.connect() as conn:
        points = conn.execute(select(table("benchmark_results", *_columns(engine, "benchmark_results")))).all()
        errors = [r.message for r in conn.execute(select(table("attempts", *_columns(engine, "attempts"))))
                  .all() if r.message]
    engine.dispose()
    assert len(points) == 2
    assert any("download of meta-llama/Llama-3.1-8B-Instruct" in e for e in errors), errors
    assert not any("could not be read" in e for e in errors), errors
    assert sim_servers_running(home.work_dir) == []

    scan = Scan()
    scan.text("run A task logs", sim_out, canaries)
    scan.text("run B task logs", docker_out, canaries)
    scan.tree(tmp_path, canaries)
    scan.database(url, canaries)
    print(f"\ncanary scan: {scan.files} files, {scan.bytes:,} bytes, {scan.rows} DB rows / {scan.cells} cells "
          f"({scan.logs} server logs decompressed), {len(canaries)} canaries, {len(scan.hits)} hits")
    assert scan.files >= 10 and scan.rows >= 15 and scan.logs >= 2
    assert (home.work_dir / "reports").exists() and list((home.work_dir / "reports").rglob("*.html"))
    assert scan.hits == [], "secrets leaked:\n" + "\n".join(scan.hits)

    # Controls: the same search finds a canary planted in a file, in a DB cell and in a compressed log.
    control = Scan()
    planted = tmp_path / "planted"
    planted.mkdir()
    (planted / "x.log").write_text(f"token={canaries['hub_token']}")
    control.tree(planted, canaries)
    control.text("cell", json.dumps({"raw": canaries["db_password"]}), canaries)
    from infersweep.store.logs import unpack_log

    control.text("log", unpack_log(zlib.compress(canaries["conn_token"].encode())), canaries)
    assert len(control.hits) == 3, control.hits
