"""Promise 1 of docs/reliability.md: a stale NFS file handle during the download does not fail the sweep.

A DAG run (dag.test, results on a fresh Postgres database) on the local-process backend downloads
`meta-llama/Llama-3.1-8B-Instruct` from a fake hub on 127.0.0.1 (tests/fixtures/fakehub; tiny files: a
config and the simulator's tokenizer). huggingface_hub's per-blob file lock raises ESTALE the first two times,
as an NFS-backed HF cache does. The `vllm` on PATH is a shim that runs the simulated engine, so the rest of the
chain is real: the download step retries (class `stale_file_handle`), every file is fetched exactly once, and
the sweep completes with every point measured.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from tests.airflow.harness import sim_servers_running, sim_sweep
from tests.reliability.dagruns import FaultHome, rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from fakehub import FakeHub, FakeRepo

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
KEY = "estale-bf16-h100-vllm"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
TOKENIZER = Path(__file__).resolve().parents[2] / "include" / "infersweep" / "engines" / "sim" / "tokenizer_data"
ESTALE_TIMES = 2


def _vllm_shim(bin_dir: Path) -> None:
    """`vllm serve MODEL …` → `infersweep sim serve MODEL …` with the simulator's tokenizer (exact lengths)."""
    bin_dir.mkdir(parents=True)
    shim = bin_dir / "vllm"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m infersweep.cli sim "$@" --tokenizer "{TOKENIZER}"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)


def test_estale_during_download_retries_downloads_once_and_the_sweep_completes(
        tmp_path: Path, rel_pg_url: str) -> None:
    files = {"config.json": json.dumps({"model_type": "llama", "hidden_size": 4096}).encode(),
             **{p.name: p.read_bytes() for p in TOKENIZER.glob("*.json")}}
    hub = FakeHub().start()
    try:
        repo = hub.add(FakeRepo(MODEL, files))
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text(sim_sweep(KEY, isl=256, osl=32, nodes=["estale-node"], points=["{ tp: 1, conc-list: [1, 2] }"],
                                   bench_yaml="{ random-range-ratio: 1.0, prompts-per-conc: 2, warmups-per-conc: 1 }")
                         .replace("engine: sim", "engine: vllm-process"))
        _vllm_shim(tmp_path / "bin")
        hf_home = tmp_path / "hf"
        home = FaultHome(
            path=tmp_path / "airflow", configs=str(sweep), results_url=rel_pg_url, work_dir=tmp_path / "work",
            extra_env={
                # Online, but the only hub it can reach is the fake one on 127.0.0.1.
                "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(hf_home), "HF_TOKEN": "",
                "HF_HUB_DISABLE_TELEMETRY": "1", "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
                "INFERSWEEP_TEST_INJECT": json.dumps(
                    {"estale": {"times": ESTALE_TIMES, "blob": repo.oid("config.json")}}),
            })
        home.migrate()
        out = home.run(KEY, {})
        assert out["state"] == "success", out
        assert rows(rel_pg_url, "SELECT status FROM runs WHERE run_id = :r", r=out["run_id"]) == [
            {"status": "success"}]

        # Each file crossed the wire once: the two failed tries did not leave half a model to fetch again.
        assert dict(hub.gets) == {f"{MODEL}/{name}": 1 for name in files}, dict(hub.gets)
        attempts = rows(rel_pg_url, "SELECT a.try_number, a.status FROM attempts a JOIN runs r ON r.id = a.run_pk "
                                    "WHERE r.run_id = :r AND a.task_id = 'serve_group.download'", r=out["run_id"])
        assert attempts == [{"try_number": 1, "status": "success"}]  # retried inside the step, not by Airflow
        result = _download_xcom(home, out["run_id"])
        assert result["attempts"] == ESTALE_TIMES + 1 and result["downloaded"] is True, result
        assert [e.split(":")[1].strip() for e in result["errors"]] == ["stale_file_handle"] * ESTALE_TIMES

        points = rows(rel_pg_url, "SELECT b.conc, b.status, b.engine FROM benchmark_results b JOIN runs r "
                                  "ON r.id = b.run_pk WHERE r.run_id = :r ORDER BY b.conc", r=out["run_id"])
        assert [(p["conc"], p["status"]) for p in points] == [(1, "ok"), (2, "ok")]
        assert sim_servers_running(home.work_dir) == []
    finally:
        hub.stop()


def _download_xcom(home: FaultHome, run_id: str) -> dict:
    """The download task's return value (per repo: attempts, errors, downloaded) from Airflow's XCom table."""
    import sqlite3

    with sqlite3.connect(home.path / "airflow.db", timeout=30) as conn:
        (value,) = conn.execute("SELECT value FROM xcom WHERE run_id = ? AND task_id = 'serve_group.download' "
                                "AND key = 'return_value'", (run_id,)).fetchone()
    data = json.loads(value) if isinstance(value, str | bytes) else value
    data = data.get("__data__", data)  # Airflow's serde envelope around the DownloadReport model
    return dict(data["repos"][MODEL])
