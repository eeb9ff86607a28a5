"""Model and GPU profiles: the facts the roofline model needs.

Model profiles are YAML files in `profiles/` (one per model, each citing its config); GPU profiles come from
`infersweep.recipes.hardware.GPU_SPECS`, never duplicated here.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infersweep.recipes.hardware import GPU_SPECS, GpuSpec

#: Weight bytes per parameter, scales included (MX formats: one 8-bit scale per 32 values; NVFP4: per 16).
BYTES_PER_PARAM: dict[str, float] = {
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "mxfp8": 1.0 + 1 / 32,
    "nvfp4": 0.5 + 1 / 16,
    "mxfp4": 0.5 + 1 / 32,
}

Precision = Literal["bf16", "fp16", "fp8", "mxfp8", "nvfp4", "mxfp4"]


class ProfileError(ValueError):
    """An unknown or invalid profile name/file."""


class ModelProfile(BaseModel):
    """What the roofline model needs to know about one model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    hf_id: str
    aliases: tuple[str, ...] = ()
    total_params: float = Field(gt=0)
    active_params: float = Field(gt=0)
    layers: int = Field(gt=0)
    moe_layers: int = Field(default=0, ge=0)
    num_experts: int = Field(default=0, ge=0)
    experts_per_token: int = Field(default=0, ge=0)
    hidden_size: int = Field(gt=0)
    num_attention_heads: int = Field(gt=0)
    num_kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    kv_layout: Literal["gqa", "mla"] = "gqa"
    kv_latent_dim: int = Field(default=0, ge=0, description="MLA: cached latent width per token and layer")
    vocab_size: int = Field(gt=0)
    max_position_embeddings: int = Field(gt=0)
    precision: Precision = "bf16"

    @model_validator(mode="after")
    def _consistent(self) -> ModelProfile:
        if self.active_params > self.total_params:
            raise ValueError("active_params must not exceed total_params")
        if self.is_moe and not (0 < self.experts_per_token < self.num_experts and self.moe_layers > 0):
            raise ValueError("an MoE profile needs 0 < experts_per_token < num_experts and moe_layers > 0")
        if self.kv_layout == "mla" and self.kv_latent_dim <= 0:
            raise ValueError("kv_layout mla needs kv_latent_dim")
        return self

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def expert_params(self) -> float:
        """Parameters in routed experts, all of them.

        Derived from total and active: active = dense + (k/E)·experts, total = dense + experts.
        """
        if not self.is_moe:
            return 0.0
        k_over_e = self.experts_per_token / self.num_experts
        return (self.total_params - self.active_params) / (1.0 - k_over_e)

    @property
    def dense_params(self) -> float:
        """Parameters every token touches (attention, shared experts, dense layers, embeddings)."""
        return self.total_params - self.expert_params

    def kv_bytes_per_token(self, kv_dtype_bytes: float) -> float:
        """KV-cache bytes per token for the whole model (all layers, all heads), before any TP split."""
        if self.kv_layout == "mla":
            return self.layers * self.kv_latent_dim * kv_dtype_bytes
        return 2.0 * self.layers * self.num_kv_heads * self.head_dim * kv_dtype_bytes

    def kv_bytes_per_token_per_gpu(self, tp: int, kv_dtype_bytes: float) -> float:
        """KV bytes per token on one GPU of a TP group.

        GQA shards KV heads over TP (replicated once TP exceeds the head count, as vLLM does); MLA's latent
        is replicated on every rank.
        """
        total = self.kv_bytes_per_token(kv_dtype_bytes)
        if self.kv_layout == "mla":
            return total
        return total / min(tp, self.num_kv_heads)


def _profile_files() -> dict[str, str]:
    root = resources.files("infersweep.engines.sim.profile_data")
    return {p.name.removesuffix(".yaml"): p.name for p in root.iterdir() if p.name.endswith(".yaml")}


@cache
def model_profiles() -> dict[str, ModelProfile]:
    """All shipped model profiles by name."""
    root = resources.files("infersweep.engines.sim.profile_data")
    out: dict[str, ModelProfile] = {}
    for name, fname in sorted(_profile_files().items()):
        text = (root / fname).read_text(encoding="utf-8")
        try:
            prof = ModelProfile.model_validate(yaml.safe_load(text))
        except ValidationError as exc:  # a shipped file is broken: say which one
            raise ProfileError(f"model profile {fname}: {exc}") from exc
        if prof.name != name:
            raise ProfileError(f"model profile {fname}: name {prof.name!r} must match the file name")
        out[name] = prof
    return out


def get_model_profile(name: str) -> ModelProfile:
    """A model profile by name, HF id or alias (case-insensitive)."""
    profiles = model_profiles()
    if name in profiles:
        return profiles[name]
    wanted = name.lower().rstrip("/")
    for prof in profiles.values():
        if wanted in {prof.name.lower(), prof.hf_id.lower(), *(a.lower() for a in prof.aliases)}:
            return prof
    raise ProfileError(
        f"unknown model profile {name!r}; known: {', '.join(sorted(profiles))} "
        "(pass --model-profile NAME, or add a YAML file to infersweep/engines/sim/profile_data/)"
    )


def find_model_profile(model: str) -> ModelProfile | None:
    """The profile for a served model id or local path (matched on the id or its last path part)."""
    for candidate in (model, model.rstrip("/").rsplit("/", 1)[-1]):
        try:
            return get_model_profile(candidate)
        except ProfileError:
            continue
    return None


def get_gpu_profile(name: str) -> GpuSpec:
    """A GPU profile from the shared hardware table (h100, h200, b200, …)."""
    try:
        return GPU_SPECS[name.lower()]
    except KeyError:
        raise ProfileError(f"unknown GPU profile {name!r}; known: {', '.join(sorted(GPU_SPECS))}") from None


def precision_from_model_id(model: str) -> Precision | None:
    """Weight precision implied by a checkpoint name (`…-FP8`, `…-NVFP4`, `…-MXFP4`), else None."""
    m = model.upper()
    for tag, prec in (("NVFP4", "nvfp4"), ("MXFP4", "mxfp4"), ("MXFP8", "mxfp8"), ("FP4", "nvfp4"), ("FP8", "fp8")):
        if tag in m:
            return prec  # type: ignore[return-value]
    return None
