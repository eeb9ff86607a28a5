"""The generic vLLM serving rules, shared by the recipe builder and the memory preflight.

Both must agree on the parallel layout, `--gpu-memory-utilization` and the CUDA-graph capture size:
the preflight estimates the memory of exactly the server the recipe starts. Rules come from the seed
recipes (InferenceX `minimaxm3_fp8_{h200,h100}[_mtp].sh`); model- and hardware-specific deviations
come from `ModelQuirks` data, never from names in code.
"""

from __future__ import annotations

import math

from infersweep.config.quirks import CudagraphOverride, ModelQuirks, ParallelMode
from infersweep.plan.models import ServeGroup
from infersweep.recipes.hardware import gpu_for_runner

DEFAULT_GMU = 0.90
#: vLLM's ceiling for `--max-cudagraph-capture-size`, and the seed's floor.
MAX_CAPTURE_SIZE = 2048
MIN_CAPTURE_SIZE = 4
#: InferenceX: max-model-len = isl + osl + 256.
MAX_MODEL_LEN_SLACK = 256


def parallel_mode(group: ServeGroup) -> ParallelMode:
    """`dep` (dp-attn: DP attention + expert parallel), `tep` (ep > 1: TP + expert parallel), else `tp`."""
    if group.dp_attn:
        return "dep"
    if group.ep > 1:
        return "tep"
    return "tp"


def data_parallel_size(group: ServeGroup) -> int:
    """DP ranks of one server: under DEP the config's tp is the DP size (each rank runs TP 1)."""
    return group.tp if group.dp_attn else 1


def tensor_parallel_size(group: ServeGroup) -> int:
    """vLLM's `--tensor-parallel-size`: 1 under DEP, else the config's tp."""
    return 1 if group.dp_attn else group.tp


def gpu_name(group: ServeGroup) -> str | None:
    """The GPU model the group's runner label names (h100, h200, …), or None when unknown."""
    spec = gpu_for_runner(group.runner)
    return spec.name if spec else None


def resolve_gmu(group: ServeGroup, quirks: ModelQuirks | None) -> float:
    """`--gpu-memory-utilization`: the first matching gmu override, else the model's gmu, else 0.90."""
    if quirks is None:
        return DEFAULT_GMU
    mode, gpu = parallel_mode(group), gpu_name(group)
    for override in quirks.gmu_overrides:
        if override.matches(runner=group.runner, gpu=gpu, mode=mode):
            return override.gmu
    return quirks.gmu


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << max(0, (n - 1).bit_length())


def _cudagraph_override(group: ServeGroup, quirks: ModelQuirks | None) -> CudagraphOverride | None:
    if quirks is None:
        return None
    mode, gpu = parallel_mode(group), gpu_name(group)
    return next((o for o in quirks.cudagraph_overrides if o.matches(runner=group.runner, gpu=gpu, mode=mode)), None)


def num_speculative_tokens(group: ServeGroup, quirks: ModelQuirks | None) -> int:
    """Draft tokens per step for a speculative group, 0 otherwise (missing quirks are the builder's error)."""
    if group.spec_decoding == "none" or quirks is None:
        return 0
    spec = quirks.spec_decoding.get(group.spec_decoding)
    return spec.num_speculative_tokens if spec else 0


def capture_size(group: ServeGroup, quirks: ModelQuirks | None, conc: int | None = None) -> int:
    """`--max-cudagraph-capture-size` for the group's highest concurrency (or `conc`).

    Seed rule: next power of two >= the decode batch, minimum 4, capped at 2048. The decode batch is
    the concurrency, or `factor * ceil(conc / DP)` where a cudagraph override bounds it per DP rank
    (the seed's H100 DEP rule). With speculative decoding every request feeds 1 + k tokens per step, so
    the batch is multiplied by (1 + num_speculative_tokens).
    """
    top = conc if conc is not None else group.max_conc
    override = _cudagraph_override(group, quirks)
    batch = top
    if override is not None:
        if override.bound == "per-dp-rank":
            batch = math.ceil(top / data_parallel_size(group))
        batch *= override.factor
    batch *= 1 + num_speculative_tokens(group, quirks)
    return min(MAX_CAPTURE_SIZE, max(MIN_CAPTURE_SIZE, next_pow2(batch)))


def max_model_len(group: ServeGroup) -> int:
    """isl + osl + 256; the group's own value when the planner set one."""
    return group.max_model_len or group.isl + group.osl + MAX_MODEL_LEN_SLACK


def with_quirk_context(group: ServeGroup, quirks: ModelQuirks | None) -> ServeGroup:
    """`group` with the quirks' `max-model-len` when it is larger than the group's own (else unchanged)."""
    want = quirks.max_model_len if quirks else None
    if want is None or want <= max_model_len(group):
        return group
    return group.model_copy(update={"max_model_len": want})


def max_num_batched_tokens(group: ServeGroup) -> int:
    """Seed rule: 2 x isl, so one full prompt plus decode tokens fit in a scheduler step."""
    return 2 * group.isl
