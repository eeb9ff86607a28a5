"""`infersweep recipe`: selects one serve group from the configs and prints its recipe JSON."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from infersweep.cli import app


@pytest.fixture(scope="module")
def example(repo_root):
    return str(repo_root / "configs" / "minimaxm3-hopper.yaml")


def _run(*args: str):
    return CliRunner().invoke(app, ["recipe", *args])


def test_prints_the_recipe_json(example) -> None:
    res = _run("--config", example, "--config-key", "minimaxm3-fp8-h200-vllm", "--isl", "8192", "--osl", "1024",
               "--tp", "8", "--ep", "8", "--dp-attn")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["argv"][:3] == ["vllm", "serve", "MiniMaxAI/MiniMax-M3-MXFP8"]
    assert out["image"] == "vllm/vllm-openai:minimax-m3"
    assert out["gpus"] == 8 and out["port"] == 8888
    assert out["env"]["HF_HUB_OFFLINE"] == "1"
    assert out["concs"] == [256, 512]
    assert out["argv"][out["argv"].index("--max-cudagraph-capture-size") + 1] == "512"
    assert len(out["fingerprint"]) == 64
    assert out["memory"]["verdict"] == "fits"
    assert out["memory"]["weights_per_rank_gb"] == 72.0


def test_conc_option_resizes_the_capture(example) -> None:
    res = _run("--config", example, "--config-key", "minimaxm3-fp8-h200-vllm-mtp", "--isl", "1024", "--osl", "1024",
               "--tp", "8", "--spec-decoding", "mtp", "--conc", "16", "--conc", "4")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["concs"] == [4, 16]
    assert out["argv"][out["argv"].index("--max-cudagraph-capture-size") + 1] == "64"  # 16 * 4
    assert out["draft_model"] == "Inferact/MiniMax-M3-EAGLE3"
    assert out["memory"]["verdict"] == "unknown"


def test_default_config_folder(repo_root, monkeypatch) -> None:
    monkeypatch.chdir(repo_root)
    res = _run("--config-key", "minimaxm3-fp8-h100-vllm", "--isl", "1024", "--osl", "1024", "--tp", "8")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["memory"]["verdict"] == "fits"


def test_non_matching_topology_lists_the_available_ones(example) -> None:
    res = _run("--config", example, "--config-key", "minimaxm3-fp8-h100-vllm", "--isl", "1024", "--osl", "1024",
               "--tp", "8", "--dp-attn")
    assert res.exit_code == 2
    assert "no serve group with isl=1024 osl=1024 tp=8 ep=1 dp-attn" in res.stderr
    assert "isl=1024 osl=1024 tp=8 ep=8 concs=256" in res.stderr
    assert "isl=8192 osl=1024 tp=8 ep=1 concs=4,8,16,32,64" in res.stderr


def test_mtp_selection_needs_an_mtp_group(example) -> None:
    res = _run("--config", example, "--config-key", "minimaxm3-fp8-h100-vllm", "--isl", "1024", "--osl", "1024",
               "--tp", "8", "--spec-decoding", "mtp")
    assert res.exit_code == 2
    assert "spec-decoding=mtp" in res.stderr


def test_unknown_config_key_suggests(example) -> None:
    res = _run("--config", example, "--config-key", "minimaxm3-fp8-h200-vlm", "--isl", "1024", "--osl", "1024",
               "--tp", "8")
    assert res.exit_code == 2
    assert "did you mean: minimaxm3-fp8-h200-vllm" in res.stderr


def test_bad_config_path_is_one_clear_error(tmp_path) -> None:
    res = _run("--config", str(tmp_path / "missing.yaml"), "--config-key", "k", "--isl", "1", "--osl", "1",
               "--tp", "1")
    assert res.exit_code == 2
    assert "missing.yaml" in res.stderr
