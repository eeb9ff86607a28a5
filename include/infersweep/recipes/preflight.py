"""Memory preflight: will one server of a serve group fit its GPUs, and how much KV cache is left?

Per GPU (rank) we estimate, in GB (1e9 bytes, the unit checkpoint sizes are quoted in):

    budget   = GPU memory x gmu                          (what vLLM may use: --gpu-memory-utilization)
    weights  = checkpoint / (TP * PP)                     TP / TEP: experts and dense layers both sharded
             = experts / DP + replicated non-expert       DEP: experts sharded over the EP=DP ranks,
                                                          attention/dense/embeddings whole on every rank
             + draft checkpoint / TP                      speculative decoding
    reserve  = overhead + activation x batched tokens (x DP under DEP) + cudagraph x capture size
    headroom = budget - weights - reserve                 -> KV cache, in GB and in tokens

Verdicts: `cannot-fit` (no headroom, or not even one max-model-len sequence of KV), `tight` (KV
cannot hold the whole concurrency at once, or, when KV bytes/token are unknown, headroom under
max(2 GB, 5% of budget)), `fits`, and `unknown` when a size is missing (never a guess). The model, its
coefficients and their provenance are documented in docs/memory-preflight.md.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from infersweep.config.quirks import ModelQuirks
from infersweep.plan.models import ServeGroup
from infersweep.recipes import rules
from infersweep.recipes.hardware import gpu_for_runner

Verdict = Literal["fits", "tight", "cannot-fit", "unknown"]

GB = 1e9
# Reserve-model defaults (docs/memory-preflight.md#reserve-model); ModelQuirks may override each.
#: CUDA context, NCCL / expert-parallel all-to-all buffers, GEMM workspaces and the sampler's profile run.
DEFAULT_RESERVE_OVERHEAD_BYTES = 3_000_000_000
#: Peak activations of vLLM's profile forward pass, per token of --max-num-batched-tokens.
DEFAULT_ACTIVATION_BYTES_PER_BATCHED_TOKEN = 100_000
#: CUDA-graph private pool, per token of --max-cudagraph-capture-size.
DEFAULT_CUDAGRAPH_BYTES_PER_CAPTURE_TOKEN = 2_000_000
#: Without KV bytes/token, headroom under max(TIGHT_MIN_GB, TIGHT_FRACTION x budget) is "tight".
TIGHT_MIN_GB = 2.0
TIGHT_FRACTION = 0.05


class MemoryVerdict(BaseModel):
    """The preflight's answer for one serve group, with every number that led to it (GB = 1e9 bytes)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verdict: Verdict
    reason: str
    gpu: str | None = None
    gpu_memory_gb: float | None = None
    gmu: float
    budget_gb: float | None = None
    parallel_mode: str
    weights_per_rank_gb: float | None = None
    draft_per_rank_gb: float | None = None
    reserve_gb: float
    overhead_gb: float
    activation_gb: float
    cudagraph_gb: float
    capture_size: int
    kv_headroom_gb: float | None = None
    kv_bytes_per_token_per_rank: float | None = None
    kv_tokens: int | None = None
    kv_tokens_needed: int
    max_model_len: int

    @property
    def fits(self) -> bool:
        """True for `fits` and `tight` (the server starts; `tight` may preempt at the top concurrency)."""
        return self.verdict in ("fits", "tight")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; GB figures rounded to 0.01."""
        out = self.model_dump(mode="json")
        for key, value in out.items():
            if isinstance(value, float) and key != "gmu":
                out[key] = round(value, 2)
        return out


def _coef(value: int | None, default: int) -> int:
    return default if value is None else value


def _weights_per_rank(group: ServeGroup, q: ModelQuirks | None) -> tuple[float | None, str]:
    """Weight bytes one rank holds, or (None, why-unknown)."""
    if q is None or q.checkpoint_bytes is None:
        return None, f"checkpoint size of {group.model} unknown (set quirks checkpoint-bytes)"
    pp = group.pp
    if not group.dp_attn:
        return q.checkpoint_bytes / (group.tp * pp), ""
    if q.expert_bytes is None:
        return None, f"DEP needs the expert share of {group.model} (set quirks expert-bytes)"
    replicated = q.replicated_bytes_per_dp_rank
    if replicated is None:
        # As stored; an engine that dequantizes these layers holds more (set the quirk then).
        replicated = q.checkpoint_bytes - q.expert_bytes
    return (q.expert_bytes / rules.data_parallel_size(group) + replicated) / pp, ""


def _draft_per_rank(group: ServeGroup, q: ModelQuirks | None) -> tuple[float | None, str]:
    if group.spec_decoding == "none":
        return 0.0, ""
    spec = q.spec_decoding.get(group.spec_decoding) if q else None
    if spec is None:
        return None, f"spec-decoding {group.spec_decoding!r} has no quirk (no draft model configured)"
    if spec.draft_bytes is None:
        return None, f"draft {spec.draft_model} size unknown (set quirks spec-decoding.{group.spec_decoding}.draft-bytes)"
    return spec.draft_bytes / rules.tensor_parallel_size(group), ""


def _kv_bytes_per_token_per_rank(group: ServeGroup, q: ModelQuirks | None) -> float | None:
    if q is None or q.kv_bytes_per_token is None:
        return None
    tp = rules.tensor_parallel_size(group)
    # TP shards KV by heads, but never more ways than there are KV heads (then it replicates);
    # decode-context parallelism shards the replicated part along the sequence instead, and prefill-context
    # parallelism shards the sequence over its extra ranks (vLLM interleaves KV over both CP groups).
    shards = min(tp, q.kv_heads) if q.kv_heads else tp
    shards = min(tp, shards * group.dcp_size)
    return q.kv_bytes_per_token / shards / group.pp / group.pcp_size


def preflight(group: ServeGroup, quirks: ModelQuirks | None, gpu_memory_gb: float | None = None) -> MemoryVerdict:
    """Estimate per-GPU memory of one server of `group` and judge whether it fits.

    `gpu_memory_gb` is the node inventory's figure when known; otherwise the GPU spec that
    `infersweep.recipes.hardware.gpu_for_runner(group.runner)` names. Missing sizes give "unknown".
    """
    spec = gpu_for_runner(group.runner)
    memory = gpu_memory_gb if gpu_memory_gb is not None else (spec.memory_gb if spec else None)
    gmu = rules.resolve_gmu(group, quirks)
    capture = rules.capture_size(group, quirks)
    batched = rules.max_num_batched_tokens(group)
    q = quirks
    overhead = _coef(q.reserve_overhead_bytes if q else None, DEFAULT_RESERVE_OVERHEAD_BYTES)
    # Under DEP the expert layers all-gather the tokens of every DP rank before dispatch, so the profile
    # run's MoE activations see DP x the per-rank batch.
    activation = batched * rules.data_parallel_size(group) * _coef(
        q.activation_bytes_per_batched_token if q else None, DEFAULT_ACTIVATION_BYTES_PER_BATCHED_TOKEN)
    cudagraph = capture * _coef(
        q.cudagraph_bytes_per_capture_token if q else None, DEFAULT_CUDAGRAPH_BYTES_PER_CAPTURE_TOKEN)
    reserve = overhead + activation + cudagraph
    per_rank_conc = math.ceil(group.max_conc / rules.data_parallel_size(group))
    spec_tokens = rules.num_speculative_tokens(group, quirks)
    needed = per_rank_conc * (group.isl + group.osl + spec_tokens)
    mml = rules.max_model_len(rules.with_quirk_context(group, quirks))
    weights, why_w = _weights_per_rank(group, q)
    draft, why_d = _draft_per_rank(group, q)
    kv_per_token = _kv_bytes_per_token_per_rank(group, q)

    base: dict[str, Any] = {
        "gpu": spec.name if spec else None,
        "gpu_memory_gb": memory,
        "gmu": gmu,
        "budget_gb": memory * gmu if memory is not None else None,
        "parallel_mode": rules.parallel_mode(group),
        "weights_per_rank_gb": weights / GB if weights is not None else None,
        "draft_per_rank_gb": draft / GB if draft is not None else None,
        "reserve_gb": reserve / GB,
        "overhead_gb": overhead / GB,
        "activation_gb": activation / GB,
        "cudagraph_gb": cudagraph / GB,
        "capture_size": capture,
        "kv_bytes_per_token_per_rank": kv_per_token,
        "kv_tokens_needed": needed,
        "max_model_len": mml,
    }
    missing = [why for why in (
        "" if memory is not None else f"GPU memory of runner {group.runner!r} unknown (no inventory entry, no GPU spec)",
        why_w, why_d,
    ) if why]
    if missing or memory is None or weights is None or draft is None:
        return MemoryVerdict(verdict="unknown", reason="; ".join(missing), **base)

    budget = memory * GB * gmu
    headroom = budget - weights - draft - reserve
    kv_tokens = max(0, int(headroom // kv_per_token)) if kv_per_token else None
    base.update(kv_headroom_gb=headroom / GB, kv_tokens=kv_tokens)
    used = (f"weights {weights / GB:.1f} GB" + (f" + draft {draft / GB:.1f} GB" if draft else "")
            + f" + reserve {reserve / GB:.1f} GB vs budget {budget / GB:.1f} GB ({memory:g} GB x gmu {gmu:g})")

    verdict: Verdict
    if weights + draft > budget:
        verdict, reason = "cannot-fit", f"weights alone exceed the budget: {used}"
    elif headroom <= 0:
        verdict, reason = "cannot-fit", f"no KV-cache headroom ({headroom / GB:.1f} GB): {used}"
    elif kv_tokens is not None and kv_tokens < mml:
        verdict, reason = "cannot-fit", (
            f"KV cache holds {kv_tokens} tokens, less than one max-model-len sequence ({mml}): {used}")
    elif kv_tokens is not None and kv_tokens < needed:
        verdict, reason = "tight", (
            f"KV cache holds {kv_tokens} tokens, less than {needed} for {per_rank_conc} concurrent requests "
            f"per rank (expect preemption at the top concurrency): {used}")
    elif kv_tokens is None and headroom < max(TIGHT_MIN_GB * GB, TIGHT_FRACTION * budget):
        verdict, reason = "tight", (
            f"only {headroom / GB:.1f} GB KV headroom (KV bytes/token unknown, so no token check): {used}")
    else:
        verdict = "fits"
        reason = f"{headroom / GB:.1f} GB KV headroom" + (
            f" = {kv_tokens} tokens (needs {needed})" if kv_tokens is not None
            else " (KV bytes/token unknown: tokens not computed)") + f": {used}"
    if group.framework != "vllm":
        # gmu, batching and capture rules are vLLM's; other engines budget similarly but not identically.
        reason += f" (vLLM memory rules applied to framework {group.framework!r})"
    return MemoryVerdict(verdict=verdict, reason=reason, **base)
