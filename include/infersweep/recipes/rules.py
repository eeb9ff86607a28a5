"""The generic vLLM serving rules, shared by the recipe builder and the memory preflight.

Both must agree on the parallel layout, `--gpu-memory-utilization` and the CUDA-graph capture size:
the preflight estimates the memory of exactly the server the recipe starts. Rules come from the seed
recipes (InferenceX `minimaxm3_fp8_{h200,h100}[_mtp].sh`); model- and hardware-specific deviations
come from `ModelQuirks` data, never from names in code. A group that a launch profile of
`recipes/data/vllm.yaml` covers (an InferenceX per-model script) is sized by the values that profile passes
(`profile_value`), so the preflight sees the same gmu, capture size, batched tokens and context length.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from infersweep.config.quirks import (
    CudagraphOverride,
    ModelQuirks,
    ParallelMode,
    SpecDecodingQuirk,
    resolve_quirks,
)
from infersweep.plan.models import ServeGroup
from infersweep.recipes.hardware import gpu_for_runner
from infersweep.recipes.ruledata import Facts, evaluate, load_table, matches

#: The vLLM rule table, recipes/data/vllm.yaml.
TABLE = "vllm"

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
    """`--gpu-memory-utilization`: the launch profile's (vLLM's 0.90 when it passes none), else the first
    matching gmu override, else the model's gmu, else 0.90."""
    if launch_profile(group) is not None:
        value = profile_value(group, "--gpu-memory-utilization")
        return DEFAULT_GMU if value is None else float(value)
    quirks = effective_quirks(group, quirks)[0]
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
    quirks = effective_quirks(group, quirks)[0]
    if quirks is None:
        return None
    mode, gpu = parallel_mode(group), gpu_name(group)
    return next((o for o in quirks.cudagraph_overrides if o.matches(runner=group.runner, gpu=gpu, mode=mode)), None)


def num_speculative_tokens(group: ServeGroup, quirks: ModelQuirks | None) -> int:
    """Draft tokens per step for a speculative group, 0 otherwise (missing quirks are the builder's error)."""
    quirks = effective_quirks(group, quirks)[0]
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
    if conc is None and (value := profile_value(group, "--max-cudagraph-capture-size")) is not None:
        return int(value)
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
    """`group` with the launch profile's `--max-model-len` (gpt-oss: isl + osl + 20, 10240 on H100), else the
    quirks' `max-model-len` when it is larger than the group's own (else unchanged)."""
    served = profile_value(group, "--max-model-len")
    if served is not None:
        return group.model_copy(update={"max_model_len": int(served)})
    want = quirks.max_model_len if quirks else None
    if want is None or want <= max_model_len(group):
        return group
    return group.model_copy(update={"max_model_len": want})


def max_num_batched_tokens(group: ServeGroup) -> int:
    """The launch profile's value; else the seed rule: 2 x isl, so one full prompt plus decode tokens fit in
    a scheduler step."""
    value = profile_value(group, "--max-num-batched-tokens")
    return 2 * group.isl if value is None else int(value)


# ------------------------------------------------------------------------ launch profiles (vllm.yaml)

def launch_facts(group: ServeGroup) -> dict[str, Any]:
    """What the table's conditions and formulas may use; `conc` is the group's highest concurrency."""
    return {
        "model": group.model, "model_prefix": group.model_prefix, "precision": group.precision,
        "gpu": gpu_name(group), "runner": group.runner, "framework": group.framework,
        "isl": group.isl, "osl": group.osl, "conc": group.max_conc,
        "tp": group.tp, "ep": group.ep, "dp_attn": group.dp_attn, "dp": data_parallel_size(group),
        "pp": group.pp, "dcp_size": group.dcp_size, "pcp_size": group.pcp_size,
        "spec_decoding": group.spec_decoding, "max_model_len": max_model_len(group),
    }


def launch_profile(group: ServeGroup) -> dict[str, Any] | None:
    """The first `launches:` profile of the vLLM table that covers `group`, or None (the generic recipe)."""
    if group.framework != "vllm":
        return None
    facts = launch_facts(group)
    for profile in load_table(TABLE).get("launches") or ():
        if matches(profile.get("when"), facts):
            return dict(profile)
    return None


def evaluate_value(value: Any, facts: Facts) -> Any:
    """ruledata.evaluate, except that text starting with `{` or `[` is a JSON literal taken verbatim (vLLM's
    `--compilation-config '{"mode":3}'`), not a `{fact}` template."""
    if isinstance(value, str) and value.startswith(("{", "[")):
        return value
    return evaluate(value, facts)


def profile_value(group: ServeGroup, flag: str) -> Any:
    """The value the group's launch profile passes for `flag` (in its args, or as a key of a config file it
    writes), None when there is no profile or it leaves the flag to vLLM's default."""
    profile = launch_profile(group)
    if profile is None:
        return None
    facts = launch_facts(group)
    for item in profile.get("args") or ():
        if flag in item and matches(item.get("when"), facts):
            value = evaluate_value(item[flag], facts)
            if value is not None and value is not False:
                return value
    for content in (profile.get("files") or {}).values():
        if isinstance(content, dict) and flag.lstrip("-") in content:
            return evaluate_value(content[flag.lstrip("-")], facts)
    return None



@functools.lru_cache(maxsize=1)
def _model_defaults() -> dict[str, ModelQuirks]:
    return {name: ModelQuirks.model_validate(raw) for name, raw in (load_table(TABLE).get("model-defaults") or {}).items()}


def effective_quirks(group: ServeGroup, quirks: ModelQuirks | None) -> tuple[ModelQuirks | None, bool]:
    """The quirks the generic recipe (and the preflight) use, and whether `--speculative-config` is written
    with spaced JSON.

    The caller's quirks win. Without any for the model, the table's `model-defaults:` stand in (master files
    carry no quirks, yet MiniMax-M3 cannot serve without --block-size 128). A speculative group whose quirks
    lack its spec-decoding takes the drafter from the table's `spec-decoding:` rule for its model x hardware.
    Idempotent: applying it to its own result changes nothing.
    """
    if quirks is None:
        quirks = resolve_quirks(_model_defaults(), model_prefix=group.model_prefix, model=group.model)
    if group.spec_decoding == "none":
        return quirks, False
    facts = launch_facts(group)
    rule = next((r for r in load_table(TABLE).get("spec-decoding") or () if matches(r.get("when"), facts)), None)
    if rule is None:
        return quirks, False
    # The script's JSON spelling follows the model x hardware, wherever the drafter comes from, so a sweep
    # with quirks-files and a master-file-only sweep get the same recipe.
    spaced = rule.get("json") == "spaced"
    if quirks is not None and group.spec_decoding in quirks.spec_decoding:
        return quirks, spaced
    spec = SpecDecodingQuirk.model_validate({k: v for k, v in rule.items() if k not in ("when", "scripts", "json")})
    base = quirks or ModelQuirks()
    return base.model_copy(update={"spec_decoding": {**base.spec_decoding, group.spec_decoding: spec}}), spaced
