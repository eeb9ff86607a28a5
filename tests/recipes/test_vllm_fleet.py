"""The vLLM builder across InferenceX's whole vLLM fleet (issue 17).

Pins a few launch profiles of `recipes/data/vllm.yaml` against what their InferenceX scripts launch, checks
that every single-node vLLM topology of both fixture snapshots builds, that master-file-only MiniMax-M3
groups get the same recipe as with configs/quirks.yaml, and measures fidelity against the oracle
(tests/recipes/ix_oracle.py): every launch must be identical per tests/recipes/launch_compare.py.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from infersweep.config.quirks import ModelQuirks
from infersweep.recipes import vllm
from infersweep.recipes.errors import MissingQuirkError, RecipeError
from infersweep.recipes.model import CONFIG_DIR
from infersweep.recipes.ruledata import load_table
from infersweep.recipes.vllm import build_recipe

from .conftest import MXFP8, make_group

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
SNAPSHOTS = {"1ef98e3ed": SHARED / "fixtures" / "inferencex", "843c6254f": SHARED / "fixtures" / "inferencex-843c6254f"}
#: A whole-fleet capture (`python -m tests.recipes.ix_oracle --out F`) to compare against, named by
#: IX_LAUNCHES; without it the test captures a sample of topologies itself.
ORACLE_JSONL = Path(os.environ.get("IX_LAUNCHES") or "/nonexistent/ix-launches.jsonl")
BASE_ENV = {"HF_HUB_OFFLINE": "1", "VLLM_ENGINE_READY_TIMEOUT_S": "3600", "PYTHONNOUSERSITE": "1"}


def _group(model: str, prefix: str, precision: str, runner: str, **kw: Any):
    return make_group(model=model, model_prefix=prefix, precision=precision, runner=runner,
                      config_key=f"{prefix}-{precision}-{runner}-vllm", image="vllm/vllm-openai:v0.22.0", **kw)


def _flags(argv: tuple[str, ...]) -> str:
    return " ".join(argv[5:])  # after `vllm serve MODEL --port P`


# ------------------------------------------------------------------------------------------ pinned profiles

def test_gptoss_b200_writes_the_scripts_config_file() -> None:
    """gptoss_fp4_b200.sh: `vllm serve --config config.yaml`, max-model-len isl + osl + 20 at 1k1k."""
    recipe = build_recipe(_group("openai/gpt-oss-120b", "gptoss", "fp4", "b200", tp=1, concs=(4, 128)), None)
    assert recipe.argv == ("vllm", "serve", "openai/gpt-oss-120b", "--port", "8888", "--host", "0.0.0.0",
                           "--config", f"{CONFIG_DIR}/config.yaml", "--gpu-memory-utilization", "0.9",
                           "--tensor-parallel-size", "1", "--max-num-seqs", "512")
    assert yaml.safe_load(recipe.files["config.yaml"]) == {
        "kv-cache-dtype": "fp8",
        "compilation-config": '{"pass_config":{"fuse_allreduce_rms":true,"eliminate_noops":true}}',
        "no-enable-prefix-caching": True, "max-cudagraph-capture-size": 2048, "max-num-batched-tokens": 8192,
        "max-model-len": 2068,
    }
    assert recipe.env == {**BASE_ENV, "TORCH_CUDA_ARCH_LIST": "10.0", "VLLM_USE_FLASHINFER_MOE_MXFP4_MXFP8": "1"}
    assert recipe.framework == "vllm" and recipe.gpus == 1
    eight_k = build_recipe(_group("openai/gpt-oss-120b", "gptoss", "fp4", "b200", isl=8192, tp=8, concs=(4,)), None)
    assert yaml.safe_load(eight_k.files["config.yaml"])["max-model-len"] == 9472


def test_dsv4_b200_dep_takes_megamoe_and_eplb() -> None:
    """dsv4_fp4_b200_vllm.sh under dp-attn: DP8 + EP, DeepGEMM MegaMoE, EPLB; batched tokens 2048."""
    group = _group("deepseek-ai/DeepSeek-V4-Pro", "dsv4", "fp4", "b200", tp=8, ep=8, dp_attn=True,
                   concs=(256, 4096))
    recipe = build_recipe(group, None)
    assert _flags(recipe.argv) == (
        "--host 0.0.0.0 --trust-remote-code --kv-cache-dtype fp8 --block-size 256 --no-enable-prefix-caching "
        "--tensor-parallel-size 1 --data-parallel-size 8 --enable-expert-parallel --moe-backend deep_gemm_mega_moe "
        '--enable-eplb --eplb-config {"communicator":"torch_nccl", "use_async": false} '
        '--compilation-config {"cudagraph_mode":"FULL_AND_PIECEWISE","custom_ops":["all"]} '
        "--attention_config.use_fp4_indexer_cache True --tokenizer-mode deepseek_v4 --tool-call-parser deepseek_v4 "
        "--enable-auto-tool-choice --reasoning-parser deepseek_v4 --max-cudagraph-capture-size 2048 "
        "--max-model-len 2304 --max-num-batched-tokens 2048")
    assert recipe.env == BASE_ENV


def test_dsv4_h200_mtp_is_speculative_without_a_draft_checkpoint() -> None:
    group = _group("deepseek-ai/DeepSeek-V4-Pro", "dsv4", "fp8", "h200", tp=8, spec_decoding="mtp", concs=(256,))
    recipe = build_recipe(group, None)
    argv = recipe.argv
    assert json.loads(argv[argv.index("--speculative-config") + 1]) == {"method": "mtp", "num_speculative_tokens": 2}
    assert recipe.draft_model is None
    assert recipe.env == {**BASE_ENV, "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "0"}
    plain = build_recipe(group.model_copy(update={"spec_decoding": "none"}), None)
    assert "--speculative-config" not in plain.argv and plain.env == BASE_ENV


@pytest.mark.parametrize(("isl", "tp", "ep", "conc", "block", "no_async", "env"), [
    # minimaxm2.5_fp8_mi355x.sh's branches on ISL/OSL, TP/EP and CONC (the group's highest).
    (1024, 8, 8, 2, "32", True, {"VLLM_ROCM_SHUFFLE_KV_CACHE_LAYOUT": "0"}),
    (1024, 2, 2, 64, "16", True, {"VLLM_ROCM_SHUFFLE_KV_CACHE_LAYOUT": "1"}),
    (1024, 2, 2, 512, "16", False, {"VLLM_ROCM_SHUFFLE_KV_CACHE_LAYOUT": "1"}),
    (8192, 8, 8, 2, "32", True, {"VLLM_ROCM_SHUFFLE_KV_CACHE_LAYOUT": "0", "VLLM_ROCM_USE_AITER_MOE": "0"}),
    (8192, 2, 2, 32, "32", True, {"VLLM_ROCM_SHUFFLE_KV_CACHE_LAYOUT": "0"}),
    (8192, 2, 2, 64, "16", True, {"VLLM_ROCM_SHUFFLE_KV_CACHE_LAYOUT": "1"}),
    (8192, 4, 4, 512, "16", False, {"VLLM_ROCM_SHUFFLE_KV_CACHE_LAYOUT": "1"}),
])
def test_minimax_m25_mi355x_branches(isl, tp, ep, conc, block, no_async, env) -> None:
    recipe = build_recipe(_group("MiniMaxAI/MiniMax-M2.5", "minimaxm2.5", "fp8", "mi355x", isl=isl, tp=tp, ep=ep,
                                 concs=(1, conc)), None)
    argv = recipe.argv
    assert argv[argv.index("--block-size") + 1] == block
    assert ("--no-async-scheduling" in argv) == no_async
    assert recipe.env == {**BASE_ENV, "VLLM_ROCM_USE_AITER": "1", "VLLM_ROCM_QUICK_REDUCE_QUANTIZATION": "INT4", **env}


def test_kimi_fp4_mi355x_repeats_a_flag_as_the_script_does_and_env_follows_tp() -> None:
    tp4 = build_recipe(_group("amd/Kimi-K2.5-MXFP4", "kimik2.5", "fp4", "mi355x", tp=4, concs=(64,)), None)
    assert tp4.argv.count("--no-enable-prefix-caching") == 2
    assert tp4.env["VLLM_ROCM_USE_AITER_RMSNORM"] == "0"
    tp8 = build_recipe(_group("amd/Kimi-K2.5-MXFP4", "kimik2.5", "fp4", "mi355x", tp=8, concs=(64,)), None)
    assert "VLLM_ROCM_USE_AITER_RMSNORM" not in tp8.env


def test_caller_quirks_add_env_and_flags_on_top_of_a_profile() -> None:
    group = _group("openai/gpt-oss-120b", "gptoss", "fp4", "h200", tp=2, concs=(64,))
    quirks = ModelQuirks.model_validate({"env": {"NCCL_DEBUG": "WARN", "VLLM_MXFP4_USE_MARLIN": "0"},
                                         "extra-serve-flags": ["--max-num-seqs", "32", "--enforce-eager"]})
    recipe = build_recipe(group, quirks, hf_cache="/mnt/hf", served_model_name="gpt")
    assert recipe.env["NCCL_DEBUG"] == "WARN" and recipe.env["VLLM_MXFP4_USE_MARLIN"] == "0"
    assert recipe.env["HF_HUB_CACHE"] == "/mnt/hf_hub_cache"
    argv = recipe.argv
    assert argv[3:7] == ("--port", "8888", "--served-model-name", "gpt")
    assert argv.count("--max-num-seqs") == 1 and argv[argv.index("--max-num-seqs") + 1] == "32"
    assert argv[-1] == "--enforce-eager"


def test_profile_layouts_it_does_not_cover_are_errors() -> None:
    with pytest.raises(RecipeError, match="pipeline or context-parallel"):
        build_recipe(_group("openai/gpt-oss-120b", "gptoss", "fp4", "b200", tp=4, pp=2), None)
    with pytest.raises(MissingQuirkError, match="refusing to build a non-speculative recipe"):
        build_recipe(_group("openai/gpt-oss-120b", "gptoss", "fp4", "b200", tp=4, spec_decoding="mtp"), None)


# ------------------------------------------------------------------- master-file-only MiniMax-M3 (no quirks)

@pytest.mark.parametrize("runner", ["h200", "h100", "b200", "b300"])
@pytest.mark.parametrize(("tp", "ep", "dp_attn", "concs"), [(8, 1, False, (4, 64)), (8, 8, False, (256,)),
                                                             (8, 8, True, (256, 512))])
def test_master_only_minimax_m3_equals_the_quirks_recipe(runner, tp, ep, dp_attn, concs, m3) -> None:
    """Without quirks-files the packaged model-defaults give the same recipe (and fingerprint) as
    configs/quirks.yaml: --block-size 128 is mandatory for MSA, so a plain generic recipe would be wrong."""
    group = make_group(runner=runner, tp=tp, ep=ep, dp_attn=dp_attn, concs=concs)
    packaged, explicit = build_recipe(group, None), build_recipe(group, m3)
    assert packaged.argv == explicit.argv
    assert packaged.fingerprint() == explicit.fingerprint()
    assert "--block-size" in packaged.argv


def test_master_only_minimax_m3_b300_mtp_takes_the_table_drafter() -> None:
    """minimaxm3_fp8_b300_mtp.sh: EAGLE3 drafter, written with Python-json spacing; capture = conc x (1 + 3)."""
    group = make_group(runner="b300", tp=8, spec_decoding="mtp", concs=(4, 64))
    argv = build_recipe(group, None).argv
    spec = argv[argv.index("--speculative-config") + 1]
    assert spec == ('{"method": "eagle3", "model": "Inferact/MiniMax-M3-EAGLE3", "num_speculative_tokens": 3, '
                    '"attention_backend": "FLASH_ATTN"}')
    assert argv[argv.index("--max-cudagraph-capture-size") + 1] == "256"
    assert build_recipe(group, None).draft_model == "Inferact/MiniMax-M3-EAGLE3"


def test_table_drafter_is_per_gpu_so_h100_mtp_still_fails_without_quirks() -> None:
    with pytest.raises(MissingQuirkError):
        build_recipe(make_group(runner="h100", spec_decoding="mtp"), None)


def test_table_profiles_are_well_formed() -> None:
    table = load_table("vllm")
    for profile in table["launches"]:
        assert {"name", "when", "args"} <= set(profile), profile.get("name")
        for item in profile["args"]:
            assert len([k for k in item if k != "when"]) == 1, (profile["name"], item)
    assert set(table["model-defaults"]) == {"minimaxm3"}
    assert MXFP8  # the model-defaults resolve by prefix for every MiniMax-M3 checkpoint


# --------------------------------------------------------------------------- the fleet: build + fidelity

def _fleet(snapshot: Path):
    from infersweep.config.sweep import load_sweep
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand_jobs

    sweep = load_sweep([snapshot / "nvidia-master.yaml", snapshot / "amd-master.yaml"])
    groups = [g for g in group_jobs(expand_jobs(sweep, PlanFilters(single_node=True))) if g.framework == "vllm"]
    return sweep, groups


@pytest.mark.parametrize("snapshot", sorted(SNAPSHOTS))
def test_every_single_node_vllm_topology_builds(snapshot) -> None:
    path = SNAPSHOTS[snapshot]
    if not (path / "nvidia-master.yaml").is_file():
        pytest.skip(f"shared InferenceX fixture {path} absent")
    sweep, groups = _fleet(path)
    assert groups
    failures = []
    for g in groups:
        try:
            build_recipe(g, sweep.quirks_for(g.model_prefix, g.model), served_model_name=g.model)
        except RecipeError as exc:
            failures.append(str(exc))
    assert failures == []


#: Oracle launches that may differ, with the reason. Empty: every vLLM launch of 1ef98e3ed is identical.
EXCEPTIONS: dict[str, str] = {}
#: When /tmp/ix-launches.jsonl is absent, the oracle runs one topology of each of these keys. Where the
#: runner launcher cannot find a key's script (dsv4-fp4-mi355x-vllm-mtp), the oracle records `intended` (the
#: script the config key names) and the recipe must equal that one.
FIDELITY_SAMPLE = ("gptoss-fp4-b200-vllm", "dsv4-fp4-b300-vllm-mtp", "minimaxm2.5-fp8-mi355x-vllm",
                   "kimik2.5-fp4-mi355x-vllm", "minimaxm3-fp8-h200-vllm", "minimaxm3-fp8-b300-vllm-mtp",
                   "dsv4-fp4-mi355x-vllm-mtp", "minimaxm2.5-fp8-h200-vllm")


def _oracle_records() -> list[dict[str, Any]]:
    if ORACLE_JSONL.is_file():
        records = [json.loads(line) for line in ORACLE_JSONL.read_text().splitlines() if line.strip()]
        return [r for r in records if r.get("framework") == "vllm"]
    try:
        from tests.recipes import ix_oracle
    except ImportError:
        pytest.skip("tests/recipes/ix_oracle.py absent and /tmp/ix-launches.jsonl not written")
    try:
        ix_oracle.require_shared()
    except ix_oracle.OracleUnavailable as exc:
        pytest.skip(str(exc))
    first: dict[str, Any] = {}
    for g in ix_oracle.fleet_groups(framework=("vllm",)):
        if g.config_key in FIDELITY_SAMPLE:
            first.setdefault(g.config_key, g)  # one topology per key keeps this test to a few seconds
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(ix_oracle.capture, first.values()))


@pytest.mark.integration  # runs InferenceX's scripts under bash (the oracle)
def test_fidelity_against_inferencex_scripts() -> None:
    if not (SNAPSHOTS["1ef98e3ed"] / "nvidia-master.yaml").is_file():
        pytest.skip("shared InferenceX fixture absent")
    from tests.recipes.launch_compare import diff_launch

    sweep, groups = _fleet(SNAPSHOTS["1ef98e3ed"])
    by_topology = {(g.config_key, g.isl, g.osl, g.tp, g.ep, g.dp_attn, g.pp, g.dcp_size, g.pcp_size,
                    g.spec_decoding): g for g in groups}
    records = _oracle_records()
    assert records
    compared, differences = 0, {}
    for rec in records:
        launch = rec if not rec.get("error") else rec.get("intended")
        if not launch or launch.get("error") or not launch.get("argv"):
            continue  # no script at all (older oracle output without `intended`)
        key = (rec["config-key"], rec["isl"], rec["osl"], rec["tp"], rec["ep"], rec["dp-attn"], rec["pp"],
               rec["dcp-size"], rec["pcp-size"], rec["spec-decoding"])
        group = by_topology[key]
        recipe = build_recipe(group, sweep.quirks_for(group.model_prefix, group.model))
        diff = diff_launch(launch, {"argv": list(recipe.argv), "env": recipe.env, "files": recipe.files})
        compared += 1
        if diff and rec["config-key"] not in EXCEPTIONS:
            differences[str(key)] = diff
    assert compared
    assert differences == {}
    assert vllm.TABLE == "vllm"


def test_preflight_rules_follow_the_launch_profile() -> None:
    """The memory preflight sizes the server the profile starts, not the generic seed recipe."""
    from infersweep.recipes import rules

    b200 = _group("openai/gpt-oss-120b", "gptoss", "fp4", "b200", tp=2, concs=(8, 128))
    assert rules.resolve_gmu(b200, None) == 0.9
    assert rules.capture_size(b200, None) == 2048  # from its config.yaml
    assert rules.max_num_batched_tokens(b200) == 8192
    assert rules.max_model_len(rules.with_quirk_context(b200, None)) == 2068
    h100 = _group("openai/gpt-oss-120b", "gptoss", "fp4", "h100", tp=2, concs=(64,))
    assert rules.max_model_len(rules.with_quirk_context(h100, None)) == 10240
    dsv4 = _group("deepseek-ai/DeepSeek-V4-Pro", "dsv4", "fp4", "b300", tp=8, concs=(4,))
    assert rules.resolve_gmu(dsv4, None) == rules.DEFAULT_GMU  # the script leaves it to vLLM's 0.90
    m3 = make_group(runner="h200", concs=(64,))
    assert rules.launch_profile(m3) is None and rules.capture_size(m3, None) == 64


def test_preflight_rules_use_the_packaged_defaults_without_quirks(m3) -> None:
    """The preflight of a master-file-only H100 DEP MiniMax-M3 group sizes the server the recipe starts."""
    from infersweep.recipes import rules

    group = make_group(runner="h100", tp=8, ep=8, dp_attn=True, concs=(256,))
    assert rules.resolve_gmu(group, None) == rules.resolve_gmu(group, m3) == 0.94
    assert rules.capture_size(group, None) == rules.capture_size(group, m3) == 64
    mtp = make_group(runner="b300", tp=8, spec_decoding="mtp", concs=(64,))
    assert rules.num_speculative_tokens(mtp, None) == 3
