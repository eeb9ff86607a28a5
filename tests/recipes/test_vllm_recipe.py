"""The vLLM recipe builder: every MiniMax-M3 Hopper serve group pinned flag for flag against the seed."""

from __future__ import annotations

import json

import pytest

from infersweep.config.quirks import CudagraphOverride, GmuOverride, ModelQuirks, SpecDecodingQuirk
from infersweep.recipes import rules
from infersweep.recipes.errors import MissingQuirkError, RecipeError, UnsupportedFrameworkError
from infersweep.recipes.model import Mount
from infersweep.recipes.vllm import build_recipe

from .conftest import MXFP8, make_group

_HEAD = f"vllm serve {MXFP8} --port 8888"
_QUIRKS = "--block-size 128 --language-model-only"
_TAIL = "--stream-interval 20 --no-enable-prefix-caching --trust-remote-code"
_SPEC = ('--speculative-config {"method":"eagle3","model":"Inferact/MiniMax-M3-EAGLE3",'
         '"num_speculative_tokens":3,"attention_backend":"FLASH_ATTN"}')
_TP4 = "--tensor-parallel-size 4"
_TEP4 = "--tensor-parallel-size 4 --enable-expert-parallel"
_TP8 = "--tensor-parallel-size 8"
_TEP8 = "--tensor-parallel-size 8 --enable-expert-parallel"
_DEP8 = "--tensor-parallel-size 1 --data-parallel-size 8 --enable-expert-parallel"
_1K = "--max-model-len 2304"
_8K = "--max-model-len 9472"
_B1K = "--max-num-batched-tokens 2048"
_B8K = "--max-num-batched-tokens 16384"


def _argv(parallel: str, gmu: str, mml: str, capture: int, batched: str, spec: str = "") -> tuple[str, ...]:
    # The seed's flag order: parallel, gmu, max-model-len, model quirks, capture, batched tokens, spec, tail.
    text = (f"{_HEAD} {parallel} --gpu-memory-utilization {gmu} {mml} {_QUIRKS} "
            f"--max-cudagraph-capture-size {capture} {batched} {spec} {_TAIL}")
    return tuple(text.split())


# (runner, isl, tp, ep, dp-attn, spec-decoding, concs) -> argv. The 13 groups of the H200/H100 master
# entries (InferenceX PR #1731) and the 6 H200 MTP groups of configs/minimaxm3-hopper.yaml.
HOPPER_GROUPS: list[tuple[tuple[str, int, int, int, bool, str, tuple[int, ...]], tuple[str, ...]]] = [
    (("h200", 1024, 4, 1, False, "none", (4, 8, 16, 32, 64)), _argv(_TP4, "0.90", _1K, 64, _B1K)),
    (("h200", 1024, 4, 4, False, "none", (128, 256)), _argv(_TEP4, "0.90", _1K, 256, _B1K)),
    (("h200", 1024, 8, 1, False, "none", (4, 8, 16, 32, 64, 128)), _argv(_TP8, "0.90", _1K, 128, _B1K)),
    (("h200", 1024, 8, 8, False, "none", (256, 512)), _argv(_TEP8, "0.90", _1K, 512, _B1K)),
    (("h200", 1024, 8, 8, True, "none", (256, 512, 1024)), _argv(_DEP8, "0.90", _1K, 1024, _B1K)),
    (("h200", 8192, 4, 1, False, "none", (4, 8, 16, 32)), _argv(_TP4, "0.90", _8K, 32, _B8K)),
    (("h200", 8192, 8, 1, False, "none", (4, 8, 16, 32, 64, 128)), _argv(_TP8, "0.90", _8K, 128, _B8K)),
    (("h200", 8192, 8, 8, False, "none", (256,)), _argv(_TEP8, "0.90", _8K, 256, _B8K)),
    (("h200", 8192, 8, 8, True, "none", (256, 512)), _argv(_DEP8, "0.90", _8K, 512, _B8K)),
    (("h100", 1024, 8, 1, False, "none", (4, 8, 16, 32, 64, 128)), _argv(_TP8, "0.90", _1K, 128, _B1K)),
    (("h100", 1024, 8, 8, False, "none", (256,)), _argv(_TEP8, "0.90", _1K, 256, _B1K)),
    (("h100", 8192, 8, 1, False, "none", (4, 8, 16, 32, 64)), _argv(_TP8, "0.90", _8K, 64, _B8K)),
    (("h100", 8192, 8, 8, False, "none", (128, 256)), _argv(_TEP8, "0.90", _8K, 256, _B8K)),
    # MTP: capture bound is conc * (1 + 3 speculative tokens), capped at 2048.
    (("h200", 1024, 8, 1, False, "mtp", (4, 8, 16, 32, 64, 128)), _argv(_TP8, "0.90", _1K, 512, _B1K, _SPEC)),
    (("h200", 1024, 8, 8, False, "mtp", (256, 512)), _argv(_TEP8, "0.90", _1K, 2048, _B1K, _SPEC)),
    (("h200", 1024, 8, 8, True, "mtp", (256,)), _argv(_DEP8, "0.90", _1K, 1024, _B1K, _SPEC)),
    (("h200", 8192, 8, 1, False, "mtp", (4, 8, 16, 32, 64, 128)), _argv(_TP8, "0.90", _8K, 512, _B8K, _SPEC)),
    (("h200", 8192, 8, 8, False, "mtp", (256,)), _argv(_TEP8, "0.90", _8K, 1024, _B8K, _SPEC)),
    (("h200", 8192, 8, 8, True, "mtp", (256,)), _argv(_DEP8, "0.90", _8K, 1024, _B8K, _SPEC)),
]


def _group(spec: tuple[str, int, int, int, bool, str, tuple[int, ...]]):
    runner, isl, tp, ep, dp_attn, spec_decoding, concs = spec
    return make_group(runner=runner, isl=isl, tp=tp, ep=ep, dp_attn=dp_attn, spec_decoding=spec_decoding,
                      concs=concs, config_key=f"minimaxm3-fp8-{runner}-vllm" + ("-mtp" if spec_decoding == "mtp" else ""))


_IDS = [f"{s[0]}-{s[1]}-tp{s[2]}-ep{s[3]}{'-dep' if s[4] else ''}-{s[5]}" for s, _ in HOPPER_GROUPS]


@pytest.mark.parametrize(("spec", "argv"), HOPPER_GROUPS, ids=_IDS)
def test_hopper_group_recipe_is_pinned(spec, argv, m3) -> None:
    group = _group(spec)
    recipe = build_recipe(group, m3)
    assert recipe.argv == argv
    assert recipe.image == "vllm/vllm-openai:minimax-m3"
    assert recipe.gpus == spec[2]  # tp*pp*pcp; DEP uses TP GPUs
    assert recipe.port == 8888
    assert recipe.env == {"HF_HUB_OFFLINE": "1", "VLLM_ENGINE_READY_TIMEOUT_S": "3600", "PYTHONNOUSERSITE": "1"}
    assert recipe.ready_timeout_s == 3600.0
    assert recipe.model == MXFP8
    assert recipe.draft_model == ("Inferact/MiniMax-M3-EAGLE3" if spec[5] == "mtp" else None)
    assert recipe.serve_group == group.id


def test_pinned_table_matches_the_configs(inferencex_dir, repo_root) -> None:
    """The table above is exactly the groups the planner makes from the master file and our example."""
    from infersweep.config.sweep import load_sweep
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand_jobs

    def topologies(paths, keys):
        sweep = load_sweep(paths)
        groups = group_jobs(expand_jobs(sweep, PlanFilters(config_keys=keys)))
        return {(g.runner, g.isl, g.tp, g.ep, g.dp_attn, g.spec_decoding, g.concs) for g in groups}

    master = topologies([inferencex_dir / "nvidia-master.yaml"], ("minimaxm3-fp8-h200-vllm", "minimaxm3-fp8-h100-vllm"))
    example = topologies([repo_root / "configs" / "minimaxm3-hopper.yaml"], ("minimaxm3-fp8-h200-vllm-mtp",))
    pinned = {spec for spec, _ in HOPPER_GROUPS}
    assert len(master) == 13
    assert pinned == master | example


def test_every_speculative_group_of_the_example_gets_a_speculative_recipe(repo_root) -> None:
    from infersweep.config.sweep import load_sweep
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import expand_jobs

    sweep = load_sweep([repo_root / "configs" / "minimaxm3-hopper.yaml"])
    groups = group_jobs(expand_jobs(sweep))
    assert any(g.spec_decoding == "mtp" for g in groups)
    for g in groups:
        argv = build_recipe(g, sweep.quirks_for(g.model_prefix, g.model)).argv
        assert ("--speculative-config" in argv) == (g.spec_decoding != "none"), g.config_key


def test_h100_mtp_group_never_falls_back_to_the_plain_recipe(m3) -> None:
    """The seed's bug: an H100 launcher ran the non-MTP script for an mtp config. Routing here is by fields."""
    group = make_group(runner="h100", tp=8, spec_decoding="mtp", concs=(4, 64), config_key="minimaxm3-fp8-h100-vllm-mtp")
    argv = build_recipe(group, m3).argv
    spec = json.loads(argv[argv.index("--speculative-config") + 1])
    assert spec == {"method": "eagle3", "model": "Inferact/MiniMax-M3-EAGLE3", "num_speculative_tokens": 3,
                    "attention_backend": "FLASH_ATTN"}
    assert argv[argv.index("--max-cudagraph-capture-size") + 1] == "256"  # 64 * (1 + 3)


@pytest.mark.parametrize("quirks", [None, ModelQuirks(), ModelQuirks.model_validate(
    {"spec-decoding": {"draft_model": {"draft-model": "x/draft"}}})])
def test_speculative_group_without_its_quirk_is_an_error(quirks) -> None:
    group = make_group(runner="h100", spec_decoding="mtp", config_key="minimaxm3-fp8-h100-vllm-mtp")
    with pytest.raises(MissingQuirkError) as err:
        build_recipe(group, quirks)
    text = str(err.value)
    assert "minimaxm3-fp8-h100-vllm-mtp" in text
    assert "spec-decoding.mtp" in text
    assert "refusing to build a non-speculative recipe" in text


@pytest.mark.parametrize("framework", ["sglang", "trt", "dynamo-vllm", "atom"])
def test_other_frameworks_are_rejected(framework, m3) -> None:
    with pytest.raises(UnsupportedFrameworkError, match=f"unsupported framework '{framework}'"):
        build_recipe(make_group(framework=framework), m3)


def test_disaggregated_groups_are_rejected(m3) -> None:
    with pytest.raises(UnsupportedFrameworkError, match="disaggregated"):
        build_recipe(make_group(disagg=True), m3)


def test_h100_dep_uses_gmu_override_and_per_rank_capture(m3) -> None:
    group = make_group(runner="h100", tp=8, ep=8, dp_attn=True, concs=(256,))
    argv = build_recipe(group, m3).argv
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.94"
    # 2 * ceil(256 / 8) = 64
    assert argv[argv.index("--max-cudagraph-capture-size") + 1] == "64"
    # The rule follows the GPU, not the label spelling.
    other_label = make_group(runner="h100-dgxc-slurm", tp=8, ep=8, dp_attn=True, concs=(1000,))
    argv = build_recipe(other_label, m3).argv
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.94"
    assert argv[argv.index("--max-cudagraph-capture-size") + 1] == "256"  # 2 * 125 = 250 -> 256


def test_h100_dep_mtp_combines_per_rank_bound_and_speculative_tokens(m3) -> None:
    group = make_group(runner="h100", tp=8, ep=8, dp_attn=True, spec_decoding="mtp", concs=(256,))
    assert rules.capture_size(group, m3) == 256  # 2 * 32 * (1 + 3)


@pytest.mark.parametrize(("concs", "expected"), [((1,), 4), ((4,), 4), ((5,), 8), ((100,), 128), ((2048,), 2048),
                                                  ((5000,), 2048)])
def test_capture_size_is_next_pow2_min4_cap2048(concs, expected) -> None:
    assert rules.capture_size(make_group(concs=concs), None) == expected


def test_generic_recipe_without_quirks() -> None:
    group = make_group(model="org/dense-model", model_prefix="dense", tp=2, concs=(1, 16))
    recipe = build_recipe(group, None)
    assert recipe.argv == (
        "vllm", "serve", "org/dense-model", "--port", "8888", "--tensor-parallel-size", "2",
        "--gpu-memory-utilization", "0.90", "--max-model-len", "2304", "--max-cudagraph-capture-size", "16",
        "--max-num-batched-tokens", "2048", "--no-enable-prefix-caching", "--trust-remote-code",
    )
    assert recipe.gpus == 2


def test_pipeline_and_context_parallel_flags_and_gpu_count() -> None:
    group = make_group(tp=4, pp=2, dcp_size=2, pcp_size=2)
    recipe = build_recipe(group, None)
    text = " ".join(recipe.argv)
    assert ("--tensor-parallel-size 4 --pipeline-parallel-size 2 --decode-context-parallel-size 2 "
            "--prefill-context-parallel-size 2") in text
    assert recipe.gpus == 16  # tp * pp * pcp; dcp reuses the TP ranks


@pytest.mark.parametrize(("tp", "dp_attn", "dcp", "pcp"), [(4, False, 3, 1), (8, True, 2, 1), (4, False, 4, 2)])
def test_decode_context_parallel_follows_vllms_rule(tp, dp_attn, dcp, pcp) -> None:
    with pytest.raises(RecipeError, match="dcp-size"):
        build_recipe(make_group(tp=tp, ep=tp if dp_attn else 1, dp_attn=dp_attn, dcp_size=dcp, pcp_size=pcp), None)


def test_port_cache_mount_name_and_quirk_env(m3) -> None:
    quirks = m3.model_copy(update={"env": {"VLLM_ENGINE_READY_TIMEOUT_S": "7200", "NCCL_DEBUG": "WARN"}})
    recipe = build_recipe(make_group(), quirks, port=9123, hf_cache="/mnt/vast/hf", served_model_name="m3")
    assert recipe.argv[3:5] == ("--port", "9123")
    assert recipe.argv[5:7] == ("--served-model-name", "m3")
    assert recipe.port == 9123
    assert recipe.mounts == (Mount(source="/mnt/vast/hf", target="/mnt/hf_hub_cache"),)
    assert recipe.env["HF_HUB_CACHE"] == "/mnt/hf_hub_cache"
    assert recipe.env["NCCL_DEBUG"] == "WARN"
    assert recipe.env["HF_HUB_OFFLINE"] == "1"
    assert recipe.ready_timeout_s == 7200.0


def test_bad_port_and_bad_timeout_env_are_errors(m3) -> None:
    with pytest.raises(RecipeError, match="port"):
        build_recipe(make_group(), m3, port=0)
    with pytest.raises(RecipeError, match="VLLM_ENGINE_READY_TIMEOUT_S"):
        build_recipe(make_group(), m3.model_copy(update={"env": {"VLLM_ENGINE_READY_TIMEOUT_S": "soon"}}))


def test_gmu_override_first_match_wins_and_runner_glob() -> None:
    quirks = ModelQuirks(gmu=0.85, gmu_overrides=(
        GmuOverride(runner="h200*", mode="tep", gmu=0.92),
        GmuOverride(runner="h200*", gmu=0.88),
        GmuOverride(gpu="h200", gmu=0.80),
    ))
    assert rules.resolve_gmu(make_group(runner="h200-cw", ep=8), quirks) == 0.92
    assert rules.resolve_gmu(make_group(runner="h200-cw"), quirks) == 0.88
    assert rules.resolve_gmu(make_group(runner="cluster:h200-dgxc"), quirks) == 0.80
    assert rules.resolve_gmu(make_group(runner="b200"), quirks) == 0.85
    argv = build_recipe(make_group(runner="h200-cw", ep=8), quirks).argv
    assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.92"


def test_cudagraph_override_bound_conc_with_factor() -> None:
    quirks = ModelQuirks(cudagraph_overrides=(CudagraphOverride(runner="b200", bound="conc", factor=2),))
    assert rules.capture_size(make_group(runner="b200", concs=(100,)), quirks) == 256
    assert rules.capture_size(make_group(runner="h200", concs=(100,)), quirks) == 128


def test_speculative_config_without_attention_backend() -> None:
    quirks = ModelQuirks(spec_decoding={"mtp": SpecDecodingQuirk(draft_model="org/draft", num_speculative_tokens=2)})
    argv = build_recipe(make_group(spec_decoding="mtp", concs=(8,)), quirks).argv
    assert json.loads(argv[argv.index("--speculative-config") + 1]) == {
        "method": "eagle3", "model": "org/draft", "num_speculative_tokens": 2}
    assert argv[argv.index("--max-cudagraph-capture-size") + 1] == "32"  # 8 * 3 -> 32


def test_fingerprint_is_stable_and_topology_specific(m3) -> None:
    a = build_recipe(make_group(tp=8), m3)
    assert a.fingerprint() == build_recipe(make_group(tp=8), m3).fingerprint()
    assert a.fingerprint() != build_recipe(make_group(tp=4), m3).fingerprint()
    assert len(a.fingerprint()) == 64


@pytest.mark.parametrize("flag", ["--max-model-len=4096", "--tensor-parallel-size", "--enable-prefix-caching",
                                  "--speculative-config", "--max-cudagraph-capture-size"])
def test_quirk_flags_may_not_repeat_generated_ones(flag, m3) -> None:
    quirks = m3.model_copy(update={"extra_serve_flags": (*m3.extra_serve_flags, flag, "1")})
    with pytest.raises(RecipeError, match="repeat flags the recipe sets itself"):
        build_recipe(make_group(), quirks)


def test_router_is_recorded_in_the_recipe_and_its_fingerprint() -> None:
    """vLLM has no serve flag for an external router: the argv is unchanged, the recipe and fingerprint are not."""
    from infersweep.config.master import Router
    from infersweep.plan.models import ServeGroup

    group = ServeGroup(id="g", config_key="k", image="vllm/vllm-openai:v0.11.0", model="org/m", model_prefix="m",
                       precision="fp8", framework="vllm", runner="h200", isl=1024, osl=1024, tp=8, dp_attn=True,
                       max_model_len=2304, exp_name="m_1k1k", concs=(64,))
    plain = build_recipe(group, None)
    routed = build_recipe(group.model_copy(update={"router": Router(name="vllm-router", version="0.1.14")}), None)
    assert routed.argv == plain.argv and plain.components == {}
    assert routed.components == {"router": {"name": "vllm-router", "version": "0.1.14"}}
    assert routed.fingerprint() != plain.fingerprint()
