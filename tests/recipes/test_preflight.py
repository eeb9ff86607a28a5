"""Memory preflight: the MiniMax-M3 cases of issue 2 plus the verdict rules and unknown-size handling."""

from __future__ import annotations

import json

import pytest

from infersweep.config.quirks import ModelQuirks, SpecDecodingQuirk, resolve_quirks
from infersweep.recipes.preflight import (
    DEFAULT_ACTIVATION_BYTES_PER_BATCHED_TOKEN,
    DEFAULT_CUDAGRAPH_BYTES_PER_CAPTURE_TOKEN,
    DEFAULT_RESERVE_OVERHEAD_BYTES,
    GB,
    preflight,
)

from .conftest import BF16, make_group
from .test_vllm_recipe import HOPPER_GROUPS, _group

M25 = "MiniMaxAI/MiniMax-M2.5"


@pytest.fixture(scope="module")
def m3_bf16(quirks_table):
    return resolve_quirks(quirks_table, model_prefix="minimaxm3", model=BF16)


@pytest.fixture(scope="module")
def m25(quirks_table):
    return resolve_quirks(quirks_table, model_prefix="minimaxm2.5", model=M25)


def m25_group(**kw):
    return make_group(model=M25, model_prefix="minimaxm2.5", config_key="minimaxm2.5-fp8-h200-vllm", **kw)


def test_mxfp8_tp8_on_h100_fits_at_about_56_gb_per_gpu(m3) -> None:
    v = preflight(make_group(runner="h100", tp=8, concs=(4, 128)), m3)
    assert v.verdict == "fits"
    assert v.weights_per_rank_gb == pytest.approx(55.5)  # 444 GB / 8
    assert v.gpu == "h100" and v.gpu_memory_gb == 80.0
    assert v.budget_gb == pytest.approx(72.0)  # 80 GB x 0.90
    assert v.kv_headroom_gb == pytest.approx(72.0 - 55.5 - v.reserve_gb)
    assert v.kv_headroom_gb > 10
    # MiniMax-M3's KV bytes/token are not in the quirks: GB headroom only, never an invented token count.
    assert v.kv_tokens is None
    assert "tokens not computed" in v.reason


@pytest.mark.parametrize(("ep", "dp_attn"), [(1, False), (8, False), (8, True)])
def test_bf16_on_8x_h100_cannot_fit(m3_bf16, ep, dp_attn) -> None:
    v = preflight(make_group(model=BF16, runner="h100", tp=8, ep=ep, dp_attn=dp_attn, concs=(64,)), m3_bf16)
    assert v.verdict == "cannot-fit"
    assert v.weights_per_rank_gb > 100  # 854 / 8 = 106.75 (DEP: 807 / 8 + 20 = 120.9)
    assert "weights alone exceed the budget" in v.reason
    assert not v.fits


def test_h100_dep8_at_conc_256_has_no_kv_headroom(m3) -> None:
    """The seed's sweep 27441767143: "No available memory for the cache blocks"."""
    v = preflight(make_group(runner="h100", tp=8, ep=8, dp_attn=True, concs=(256,)), m3)
    assert v.verdict == "cannot-fit"
    assert v.parallel_mode == "dep"
    assert v.weights_per_rank_gb == pytest.approx(72.0)  # 416 / 8 expert shard + 20 replicated
    assert v.gmu == 0.94 and v.budget_gb == pytest.approx(75.2)
    assert v.capture_size == 64
    assert v.kv_headroom_gb <= 0
    assert "no KV-cache headroom" in v.reason
    # At the settings the seed first ran with (gmu 0.90, capture up to conc) it is further out of reach.
    plain = m3.model_copy(update={"gmu_overrides": (), "cudagraph_overrides": ()})
    worse = preflight(make_group(runner="h100", tp=8, ep=8, dp_attn=True, concs=(256,)), plain)
    assert worse.verdict == "cannot-fit" and worse.kv_headroom_gb < v.kv_headroom_gb


def test_h200_dep8_fits_with_room(m3) -> None:
    v = preflight(make_group(runner="h200", tp=8, ep=8, dp_attn=True, concs=(256, 512, 1024)), m3)
    assert v.verdict == "fits"
    assert v.weights_per_rank_gb == pytest.approx(72.0)
    assert v.kv_headroom_gb > 40


@pytest.mark.parametrize(("spec", "_argv"), [c for c in HOPPER_GROUPS if c[0][5] == "none"])
def test_every_group_the_seed_ran_is_not_pruned(spec, _argv, m3) -> None:
    v = preflight(_group(spec), m3)
    assert v.verdict in ("fits", "tight"), v.reason


def test_mtp_group_without_draft_size_is_unknown(m3) -> None:
    v = preflight(make_group(tp=8, spec_decoding="mtp", concs=(64,)), m3)
    assert v.verdict == "unknown"
    assert "Inferact/MiniMax-M3-EAGLE3" in v.reason and "draft-bytes" in v.reason
    assert v.weights_per_rank_gb == pytest.approx(55.5)  # the known numbers are still reported


def test_draft_weights_count_per_tp_rank(m3) -> None:
    spec = m3.spec_decoding["mtp"].model_copy(update={"draft_bytes": 8_000_000_000})
    q = m3.model_copy(update={"spec_decoding": {"mtp": spec}})
    v = preflight(make_group(tp=8, spec_decoding="mtp", concs=(64,)), q)
    assert v.verdict == "fits"
    assert v.draft_per_rank_gb == pytest.approx(1.0)
    assert v.capture_size == 256  # 64 * (1 + 3)


def test_unknown_sizes_give_unknown_never_a_guess(m3) -> None:
    assert preflight(make_group(), None).verdict == "unknown"
    no_size = preflight(make_group(), ModelQuirks())
    assert no_size.verdict == "unknown" and "checkpoint-bytes" in no_size.reason
    dep_no_experts = preflight(make_group(tp=8, ep=8, dp_attn=True),
                               ModelQuirks(checkpoint_bytes=444_000_000_000))
    assert dep_no_experts.verdict == "unknown" and "expert-bytes" in dep_no_experts.reason
    tpu = preflight(make_group(runner="tpu-v5p"), m3)
    assert tpu.verdict == "unknown" and "tpu-v5p" in tpu.reason and tpu.gpu is None
    spec_no_quirk = preflight(make_group(spec_decoding="draft_model"), m3)
    assert spec_no_quirk.verdict == "unknown" and "no quirk" in spec_no_quirk.reason


def test_inventory_memory_wins_over_the_gpu_table(m3) -> None:
    v = preflight(make_group(runner="tpu-v5p", tp=8), m3, gpu_memory_gb=141.0)
    assert v.verdict == "fits" and v.budget_gb == pytest.approx(126.9)
    small = preflight(make_group(runner="h200", tp=8), m3, gpu_memory_gb=60.0)
    assert small.verdict == "cannot-fit"


def test_replicated_bytes_default_to_the_stored_non_expert_share() -> None:
    q = ModelQuirks(checkpoint_bytes=100 * 10**9, expert_bytes=80 * 10**9)
    v = preflight(make_group(tp=4, ep=4, dp_attn=True), q)
    assert v.weights_per_rank_gb == pytest.approx(80 / 4 + 20)


def test_pipeline_parallel_divides_the_weights(m3) -> None:
    assert preflight(make_group(tp=4, pp=2), m3).weights_per_rank_gb == pytest.approx(444 / 8)


def test_reserve_model_terms(m3) -> None:
    g = make_group(tp=8, isl=8192, osl=1024, concs=(100,))
    v = preflight(g, m3)
    assert v.capture_size == 128
    assert v.overhead_gb == pytest.approx(DEFAULT_RESERVE_OVERHEAD_BYTES / GB)
    assert v.activation_gb == pytest.approx(16384 * DEFAULT_ACTIVATION_BYTES_PER_BATCHED_TOKEN / GB)
    assert v.cudagraph_gb == pytest.approx(128 * DEFAULT_CUDAGRAPH_BYTES_PER_CAPTURE_TOKEN / GB)
    assert v.reserve_gb == pytest.approx(v.overhead_gb + v.activation_gb + v.cudagraph_gb)
    # DEP all-gathers every DP rank's tokens in the expert layers: activation scales with DP.
    dep = preflight(make_group(tp=8, ep=8, dp_attn=True, isl=8192, osl=1024, concs=(100,)), m3)
    assert dep.activation_gb == pytest.approx(8 * v.activation_gb)
    # Quirks override every coefficient.
    q = m3.model_copy(update={"reserve_overhead_bytes": 0, "activation_bytes_per_batched_token": 0,
                              "cudagraph_bytes_per_capture_token": 0})
    assert preflight(g, q).reserve_gb == 0


def test_kv_tokens_fits_on_h200(m25) -> None:
    v = preflight(m25_group(runner="h200", tp=4, concs=(1, 256)), m25)
    assert v.verdict == "fits"
    assert v.kv_bytes_per_token_per_rank == pytest.approx(253_952 / 4)
    assert v.kv_tokens == int(v.kv_headroom_gb * GB // (253_952 / 4))
    assert v.kv_tokens >= v.kv_tokens_needed == 256 * 2048


def test_kv_tokens_short_of_the_concurrency_is_tight(m25) -> None:
    v = preflight(m25_group(runner="h100", tp=4, concs=(1, 256)), m25)
    assert v.verdict == "tight"
    assert v.max_model_len <= v.kv_tokens < v.kv_tokens_needed
    assert "preemption" in v.reason
    assert v.fits


def test_kv_tokens_below_one_sequence_cannot_fit(m25) -> None:
    g = m25_group(runner="h100", tp=4, isl=8192, osl=1024, concs=(4,))
    base = preflight(g, m25)
    # A GPU just big enough for weights + reserve + 0.1 GB of KV: ~1,600 tokens < max-model-len 9472.
    memory = (base.weights_per_rank_gb + base.reserve_gb + 0.1) / base.gmu
    v = preflight(g, m25, gpu_memory_gb=memory)
    assert v.verdict == "cannot-fit"
    assert 0 < v.kv_tokens < v.max_model_len
    assert "less than one max-model-len sequence" in v.reason


def test_tight_by_gb_when_kv_bytes_unknown(m3) -> None:
    g = make_group(runner="h200", tp=4, concs=(64,))
    base = preflight(g, m3)
    memory = (base.weights_per_rank_gb + base.reserve_gb + 1.0) / base.gmu
    v = preflight(g, m3, gpu_memory_gb=memory)
    assert v.verdict == "tight" and v.kv_headroom_gb == pytest.approx(1.0)


def test_kv_sharding_is_capped_by_kv_heads(m25) -> None:
    v = preflight(m25_group(runner="b200", tp=16, concs=(8,)), m25)
    assert v.kv_bytes_per_token_per_rank == pytest.approx(253_952 / 8)
    dep = preflight(m25_group(runner="b200", tp=8, ep=8, dp_attn=True, concs=(64,)), m25)
    assert dep.kv_bytes_per_token_per_rank == pytest.approx(253_952)  # TP 1 per DP rank: whole KV
    assert dep.kv_tokens_needed == 8 * 2048  # ceil(64 / 8) requests per rank


def test_to_json_is_json_ready_and_rounded(m3) -> None:
    out = preflight(make_group(runner="h100", tp=8, ep=8, dp_attn=True, concs=(256,)), m3).to_json()
    assert json.loads(json.dumps(out)) == out
    assert out["verdict"] == "cannot-fit"
    for key in ("verdict", "reason", "gpu_memory_gb", "gmu", "budget_gb", "weights_per_rank_gb", "reserve_gb",
                "kv_headroom_gb", "kv_tokens", "capture_size", "max_model_len"):
        assert key in out
    assert out["budget_gb"] == 75.2 and out["weights_per_rank_gb"] == 72.0


def test_spec_quirk_draft_bytes_field_validates() -> None:
    q = SpecDecodingQuirk.model_validate({"draft-model": "a/b", "draft-bytes": 1_000})
    assert q.draft_bytes == 1_000


def test_other_frameworks_get_the_vllm_rules_flagged(m3) -> None:
    v = preflight(make_group(framework="sglang", tp=8), m3)
    assert v.verdict == "fits"
    assert "vLLM memory rules applied to framework 'sglang'" in v.reason


def test_pipeline_and_context_parallel_layouts_split_memory(m25) -> None:
    """PP splits weights and KV over its stages; DCP/PCP shard KV along the sequence (PCP adds ranks)."""
    base = preflight(m25_group(tp=4), m25)
    pp2 = preflight(m25_group(tp=4, pp=2), m25)
    pcp2 = preflight(m25_group(tp=4, pcp_size=2), m25)
    assert pp2.weights_per_rank_gb == pytest.approx(base.weights_per_rank_gb / 2)
    assert pp2.kv_bytes_per_token_per_rank == pytest.approx(base.kv_bytes_per_token_per_rank / 2)
    assert pcp2.weights_per_rank_gb == pytest.approx(base.weights_per_rank_gb)
    assert pcp2.kv_bytes_per_token_per_rank == pytest.approx(base.kv_bytes_per_token_per_rank / 2)
