"""Per-model quirks, kept as data in the sweep file, never as branches in code.

Example (YAML, under `quirks:` keyed by model-prefix or HF model id; `configs/quirks.yaml` is the
shipped table):

    minimaxm3:
      extra-serve-flags: [--block-size, "128", --language-model-only]
      stream-interval: 20
      gmu-overrides: [{gpu: h100, mode: dep, gmu: 0.94}]
      cudagraph-overrides: [{gpu: h100, mode: dep, bound: per-dp-rank, factor: 2}]
      spec-decoding:
        mtp: {method: eagle3, draft-model: Inferact/MiniMax-M3-EAGLE3, num-speculative-tokens: 3,
              attention-backend: FLASH_ATTN}
    MiniMaxAI/MiniMax-M3-MXFP8:
      checkpoint-bytes: 444_000_000_000

An entry keyed by HF model id refines the entry of its model-prefix field by field
(`resolve_quirks`): serve flags live with the model family, sizes with the exact checkpoint.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ParallelMode = Literal["tp", "tep", "dep"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _HardwareMatch(_Strict):
    """Shared matcher: runner-label glob, GPU model (from the runner's GPU spec) and parallel mode.

    Every given criterion must match; an omitted one matches anything.
    """

    runner: str | None = Field(default=None, description="runner label glob, e.g. h100*")
    gpu: str | None = Field(
        default=None,
        description="GPU model as in infersweep.recipes.hardware (h100, h200, b200, …); matches every "
        "runner label that names that GPU, so `h100` and `h100-dgxc-slurm` both match",
    )
    mode: ParallelMode | None = None

    def matches(self, *, runner: str, gpu: str | None, mode: ParallelMode) -> bool:
        """True when every criterion that is set matches this (runner, gpu, mode)."""
        if self.runner is not None and not fnmatch.fnmatchcase(runner, self.runner):
            return False
        if self.gpu is not None and (gpu is None or gpu.lower() != self.gpu.lower()):
            return False
        return self.mode is None or self.mode == mode


class GmuOverride(_HardwareMatch):
    """`--gpu-memory-utilization` override for a (runner glob, GPU, parallel mode) match; first match wins."""

    gmu: float = Field(gt=0, le=1)


class CudagraphOverride(_HardwareMatch):
    """How `--max-cudagraph-capture-size` is bounded for a (runner glob, GPU, parallel mode) match.

    `bound: conc` captures up to the group's highest concurrency (the default rule).
    `bound: per-dp-rank` captures up to `factor * ceil(conc / DP)`: under DEP each DP rank only ever
    batches its own share of the requests, so graphs past that share are memory spent for nothing
    (the factor leaves slack for ragged arrival). First match wins.
    """

    bound: Literal["conc", "per-dp-rank"] = "per-dp-rank"
    factor: int = Field(default=1, ge=1)


class SpecDecodingQuirk(_Strict):
    method: str = "eagle3"
    draft_model: str = Field(alias="draft-model")
    num_speculative_tokens: int = Field(default=3, ge=1, alias="num-speculative-tokens")
    attention_backend: str | None = Field(default=None, alias="attention-backend")
    draft_bytes: int | None = Field(
        default=None, alias="draft-bytes", gt=0,
        description="draft checkpoint size for the memory preflight; unknown makes the verdict unknown",
    )


class ModelQuirks(_Strict):
    """What a model needs beyond the generic vLLM recipe, plus the sizes the memory preflight uses."""

    extra_serve_flags: tuple[str, ...] = Field(default=(), alias="extra-serve-flags")
    stream_interval: int | None = Field(default=None, alias="stream-interval", ge=1)
    gmu: float = Field(default=0.90, gt=0, le=1)
    gmu_overrides: tuple[GmuOverride, ...] = Field(default=(), alias="gmu-overrides")
    cudagraph_overrides: tuple[CudagraphOverride, ...] = Field(default=(), alias="cudagraph-overrides")
    spec_decoding: dict[str, SpecDecodingQuirk] = Field(default_factory=dict, alias="spec-decoding")
    env: dict[str, str] = Field(default_factory=dict)
    max_model_len: int | None = Field(
        default=None, alias="max-model-len", gt=0,
        description="serve with this context length instead of isl + osl + 256 when it is larger, e.g. so "
        "the few-shot gsm8k eval fits beside a short benchmark shape",
    )
    # Memory preflight inputs (bytes). Unknown sizes make the verdict "unknown", never a guess.
    checkpoint_bytes: int | None = Field(default=None, alias="checkpoint-bytes", gt=0)
    expert_bytes: int | None = Field(default=None, alias="expert-bytes", ge=0)
    replicated_bytes_per_dp_rank: int | None = Field(
        default=None, alias="replicated-bytes-per-dp-rank", ge=0,
        description="non-expert weights each DP rank holds in full under DEP (after any dequantization)",
    )
    kv_bytes_per_token: int | None = Field(
        default=None, alias="kv-bytes-per-token", gt=0,
        description="KV-cache bytes one token takes across all layers and KV heads of the whole model",
    )
    kv_heads: int | None = Field(
        default=None, alias="kv-heads", ge=1,
        description="KV heads per layer: TP shards the KV cache at most this many ways (1 for MLA)",
    )
    # Reserve-model coefficients (see docs/memory-preflight.md); omitted ones use the documented defaults.
    reserve_overhead_bytes: int | None = Field(default=None, alias="reserve-overhead-bytes", ge=0)
    activation_bytes_per_batched_token: int | None = Field(
        default=None, alias="activation-bytes-per-batched-token", ge=0,
    )
    cudagraph_bytes_per_capture_token: int | None = Field(
        default=None, alias="cudagraph-bytes-per-capture-token", ge=0,
    )

    def refined_by(self, other: ModelQuirks) -> ModelQuirks:
        """These quirks with every field `other` sets explicitly taken from `other`."""
        return self.model_copy(update={name: getattr(other, name) for name in other.model_fields_set})


def resolve_quirks(
    table: Mapping[str, ModelQuirks], *, model_prefix: str, model: str,
) -> ModelQuirks | None:
    """The quirks for one model: the model-prefix entry refined by the exact HF-model-id entry.

    Returns None when neither key is in the table (the generic recipe applies and sizes are unknown).
    """
    family, exact = table.get(model_prefix), table.get(model)
    if family is not None and exact is not None:
        return family.refined_by(exact)
    return exact if exact is not None else family
