"""Flag parsing and the recipe → sim mapping."""

from __future__ import annotations

import pytest

from infersweep.engines.sim.config import parse_sim_argv, recipe_to_sim_argv, sim_command
from infersweep.recipes.model import Recipe

# The InferenceX MiniMax-M3 H200 DEP recipe's flags (notes/inferencex.md §3).
DEP_ARGV = (
    "vllm", "serve", "MiniMaxAI/MiniMax-M3-MXFP8", "--host", "0.0.0.0", "--port", "8888",
    "--tensor-parallel-size=1", "--data-parallel-size=8", "--enable-expert-parallel",
    "--gpu-memory-utilization", "0.90", "--max-model-len", "9472", "--block-size", "128",
    "--language-model-only", "--max-num-batched-tokens", "16384", "--stream-interval", "20",
    "--no-enable-prefix-caching", "--trust-remote-code", "--max-cudagraph-capture-size", "512",
    "--speculative-config", '{"method":"eagle3","num_speculative_tokens":3}',
)


def test_recipe_maps_onto_the_sim() -> None:
    recipe = Recipe(image="vllm/vllm-openai:minimax-m3", argv=DEP_ARGV, model="MiniMaxAI/MiniMax-M3-MXFP8",
                    gpus=8, port=8888)
    argv = recipe_to_sim_argv(recipe, gpu_profile="h200", time_scale=10)
    assert argv[:3] == ["sim", "serve", "MiniMaxAI/MiniMax-M3-MXFP8"]
    cfg = parse_sim_argv(argv[2:])
    assert (cfg.tp, cfg.dp, cfg.ep) == (1, 8, 8)
    assert cfg.model_profile == "minimax-m3" and cfg.gpu_profile == "h200"
    assert cfg.precision == "mxfp8"  # from the checkpoint name
    assert (cfg.block_size, cfg.stream_interval, cfg.max_model_len) == (128, 20, 9472)
    assert cfg.max_num_batched_tokens == 16384 and cfg.time_scale == 10.0
    assert cfg.model == "MiniMaxAI/MiniMax-M3-MXFP8"  # served as vLLM would: the model tag
    assert "speculative_config" in cfg.ignored_flags and "trust_remote_code" in cfg.ignored_flags
    assert sim_command(argv, "/py")[:3] == ["/py", "-m", "infersweep.cli"]


def test_served_name_and_defaults() -> None:
    cfg = parse_sim_argv([])
    assert cfg.model is None and cfg.model_profile == "llama-3.1-8b" and cfg.gpu_profile == "h100"
    cfg = parse_sim_argv(["--model", "my-model", "--model-profile", "deepseek-r1", "--tp", "8", "--ep", "8"])
    assert cfg.model == "my-model" and cfg.ep == 8
    recipe = Recipe(image="x", argv=("vllm", "serve", "meta-llama/Llama-3.1-70B-Instruct", "-tp", "4"),
                    model="meta-llama/Llama-3.1-70B-Instruct", served_model_name="llama70", port=9000)
    cfg = parse_sim_argv(recipe_to_sim_argv(recipe)[2:])
    assert (cfg.model, cfg.tp, cfg.port, cfg.model_profile) == ("llama70", 4, 9000, "llama-3.1-70b")


@pytest.mark.parametrize("argv, message", [
    (["--no-such-flag"], "unrecognized arguments"),
    (["--speculative-config", "{not json"], "not valid JSON"),
    (["--tp", "4", "--ep", "2"], "--ep must be 1 or tp"),
    (["--accuracy", "0.5"], "--accuracy needs --answer-key"),
    (["some/unknown-model"], "no model profile matches"),
    (["--tp", "4", "--decode-context-parallel-size", "3"], "must divide --tensor-parallel-size 4"),
    (["--max-num-seqs", "abc"], "invalid int value"),
])
def test_bad_flags_fail_clearly(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_sim_argv(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_non_vllm_recipes_are_refused() -> None:
    with pytest.raises(ValueError, match="not a vLLM serve command"):
        recipe_to_sim_argv(Recipe(image="x", argv=("python", "server.py"), model="m"))


def test_layout_flags_of_a_recipe_reach_the_sim() -> None:
    """The vLLM recipe's PP / DCP / PCP flags are modelled (GPU count, KV room), not refused or ignored."""
    recipe = Recipe(image="x", argv=("vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--tensor-parallel-size",
                                     "2", "--pipeline-parallel-size", "2", "--decode-context-parallel-size", "2",
                                     "--prefill-context-parallel-size", "2", "--cp-kv-cache-interleave-size", "16"),
                    model="meta-llama/Llama-3.1-8B-Instruct")
    cfg = parse_sim_argv(recipe_to_sim_argv(recipe)[2:])
    assert (cfg.tp, cfg.pp, cfg.dcp, cfg.pcp) == (2, 2, 2, 2)
    assert "--cp-kv-cache-interleave-size" in cfg.ignored_flags or "cp_kv_cache_interleave_size" in cfg.ignored_flags
