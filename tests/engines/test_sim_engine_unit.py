"""SimulatedEngine command building and the `sim` CLI group (no subprocess)."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.config.inventory import Node
from infersweep.engines.base import EngineError
from infersweep.engines.sim.config import parse_sim_argv
from infersweep.engines.sim_engine import SimulatedEngine
from infersweep.recipes.model import Recipe

RECIPE = Recipe(image="vllm/vllm-openai:v0.11.0", model="deepseek-ai/DeepSeek-R1-0528", gpus=8, port=8123,
                argv=("vllm", "serve", "deepseek-ai/DeepSeek-R1-0528", "--tensor-parallel-size", "8",
                      "--enable-expert-parallel", "--kv-cache-dtype", "fp8"))


def test_command_runs_this_python_and_maps_the_recipe() -> None:
    argv = SimulatedEngine(time_scale=20).command(RECIPE, Node(name="n1", runner="b200-dgxc"))
    assert argv[:5] == [sys.executable, "-m", "infersweep.cli", "sim", "serve"]
    cfg = parse_sim_argv(argv[5:])
    assert (cfg.model_profile, cfg.gpu_profile, cfg.tp, cfg.ep, cfg.port) == ("deepseek-r1", "b200", 8, 8, 8123)
    assert cfg.kv_dtype_bytes == 1.0 and cfg.time_scale == 20.0


@pytest.mark.parametrize("node, expected", [
    (None, "h100"),
    (Node(name="n", runner="h200"), "h200"),
    (Node(name="n", runner="mystery-box"), "h100"),
    (Node(name="n", runner="h200", **{"gpu-profile": "b200"}), "b200"),
])
def test_gpu_profile_choice(node: Node | None, expected: str) -> None:
    assert SimulatedEngine().gpu_profile_for(node) == expected
    assert SimulatedEngine(gpu_profile="h100").gpu_profile_for(node) == "h100"


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(EngineError, match="unknown model profile"):
        SimulatedEngine(model_profile="gpt-17")
    with pytest.raises(EngineError, match="unknown GPU profile"):
        SimulatedEngine(gpu_profile="tpu")
    with pytest.raises(EngineError, match="time_scale"):
        SimulatedEngine(time_scale=0)
    with pytest.raises(EngineError, match="cannot run this recipe"):
        SimulatedEngine(model_profile="llama-3.1-8b").command(
            Recipe(image="x", argv=("sglang", "serve"), model="m"), None)


def test_cli_lists_profiles_and_serve_help() -> None:
    r = CliRunner().invoke(app, ["sim", "profiles"])
    assert r.exit_code == 0, r.output
    assert "minimax-m3" in r.output and "h200" in r.output
    r = CliRunner().invoke(app, ["sim", "serve", "--help"])
    assert r.exit_code == 0
    assert "--time-scale" in r.output and "--model-profile" in r.output
