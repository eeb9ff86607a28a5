"""`infersweep engines download|verify|gpu-sample` through typer (registered on a local app)."""

from __future__ import annotations

import json
import shutil

import typer
from typer.testing import CliRunner

from infersweep.engines import ops_cli


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)  # typer needs 2+ commands to keep the group name
    ops_cli.register(app)
    return app


def test_download_local_path_and_verify(tmp_path):
    runner = CliRunner()
    weights = tmp_path / "w"
    weights.mkdir()
    res = runner.invoke(_app(), ["engines", "download", str(weights)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["local"] is True
    res = runner.invoke(_app(), ["engines", "verify", "acme/absent", "--hf-home", str(tmp_path)])
    assert res.exit_code == 1 and "no download manifest" in res.stderr


def test_download_error_exits_2_with_hint(tmp_path):
    # HF_HUB_OFFLINE=1 (conftest) in a download step is a permanent misconfiguration.
    res = CliRunner().invoke(_app(), ["engines", "download", "acme/x", "--hf-home", str(tmp_path)])
    assert res.exit_code == 2 and "HF_HUB_OFFLINE" in res.stderr


def test_gpu_sample_without_nvidia_smi_prints_nulls_with_reason(monkeypatch):
    if shutil.which("nvidia-smi"):
        import pytest

        pytest.skip("this host has nvidia-smi: the null path is not reachable")
    res = CliRunner().invoke(_app(), ["engines", "gpu-sample"])
    assert res.exit_code == 0, res.output
    [sample] = json.loads(res.stdout)
    assert sample["power_w"] is None and "not found" in sample["null_reasons"]["power_w"]
