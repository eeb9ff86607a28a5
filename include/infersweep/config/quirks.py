"""Per-model quirks, kept as data in the sweep file, never as branches in code.

Example (YAML, under `quirks:` keyed by model-prefix or HF model id):

    minimaxm3:
      extra-serve-flags: [--block-size, "128", --language-model-only]
      stream-interval: 20
      gmu-overrides: [{runner: h100, mode: dep, gmu: 0.94}]
      spec-decoding:
        mtp: {method: eagle3, draft-model: Inferact/MiniMax-M3-EAGLE3, num-speculative-tokens: 3,
              attention-backend: FLASH_ATTN}
      checkpoint-bytes: 444_000_000_000
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ParallelMode = Literal["tp", "tep", "dep"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class GmuOverride(_Strict):
    """`--gpu-memory-utilization` override for a (runner glob, parallel mode) match."""

    runner: str | None = Field(default=None, description="runner label glob, e.g. h100*")
    mode: ParallelMode | None = None
    gmu: float = Field(gt=0, le=1)


class SpecDecodingQuirk(_Strict):
    method: str = "eagle3"
    draft_model: str = Field(alias="draft-model")
    num_speculative_tokens: int = Field(default=3, ge=1, alias="num-speculative-tokens")
    attention_backend: str | None = Field(default=None, alias="attention-backend")


class ModelQuirks(_Strict):
    """What a model needs beyond the generic vLLM recipe, plus the sizes the memory preflight uses."""

    extra_serve_flags: tuple[str, ...] = Field(default=(), alias="extra-serve-flags")
    stream_interval: int | None = Field(default=None, alias="stream-interval", ge=1)
    gmu: float = Field(default=0.90, gt=0, le=1)
    gmu_overrides: tuple[GmuOverride, ...] = Field(default=(), alias="gmu-overrides")
    spec_decoding: dict[str, SpecDecodingQuirk] = Field(default_factory=dict, alias="spec-decoding")
    env: dict[str, str] = Field(default_factory=dict)
    # Memory preflight inputs (bytes). Unknown sizes make the verdict "unknown", never a guess.
    checkpoint_bytes: int | None = Field(default=None, alias="checkpoint-bytes", gt=0)
    expert_bytes: int | None = Field(default=None, alias="expert-bytes", ge=0)
    replicated_bytes_per_dp_rank: int | None = Field(
        default=None, alias="replicated-bytes-per-dp-rank", ge=0,
        description="non-expert weights each DP rank holds in full under DEP (after any dequantization)",
    )
    kv_bytes_per_token: int | None = Field(default=None, alias="kv-bytes-per-token", gt=0)
