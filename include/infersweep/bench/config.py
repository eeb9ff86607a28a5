"""`BenchConfig`: everything one benchmark point needs, validated once at the edge."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Above this many concurrent streams one client process is not trusted to keep up (client-capacity.md),
#: so ``workers="auto"`` switches to the multi-process mode.
AUTO_MULTIPROCESS_ABOVE = 512


class BenchConfig(BaseModel):
    """One benchmark point: a single concurrency (or request rate) against one OpenAI-compatible server.

    Defaults follow InferenceX: ``num_prompts = 10·C``, ``warmups = 2·C`` (distinct prompts), closed loop
    (``request_rate = inf``) with ``C`` streams in flight. ``random_range_ratio`` uses InferenceX semantics
    (lengths uniform in ``[r·L, L]``; 1.0 means exact lengths), not vLLM's ``[L(1−r), L(1+r)]``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")

    base_url: str = Field(description="Server root, e.g. http://127.0.0.1:8000 (no /v1 suffix needed).")
    model: str = Field(description="Model name sent in the request body (served model name).")
    tokenizer: str = Field(description="Local tokenizer directory (tokenizer.json) or a hub repo id.")
    isl: int = Field(gt=0, description="Input sequence length in tokens (upper bound when r < 1).")
    osl: int = Field(gt=0, description="Output sequence length in tokens (upper bound when r < 1).")
    conc: int = Field(gt=0, description="Max concurrency C (semaphore, like --max-concurrency).")
    num_prompts: int | None = Field(default=None, gt=0, description="Measured requests; None → 10·C.")
    warmups: int | None = Field(default=None, ge=0, description="Untimed warm-up requests; None → 2·C.")
    random_range_ratio: float = Field(
        default=1.0, gt=0.0, le=1.0, description="InferenceX semantics: lengths uniform in [r·L, L]."
    )
    chat: bool = Field(default=False, description="Use /v1/chat/completions with the chat template.")
    request_rate: float = Field(default=math.inf, gt=0.0, description="Requests/s; inf → closed loop.")
    burstiness: float = Field(default=1.0, gt=0.0, description="Gamma shape; 1 → Poisson arrivals.")
    gpus: int = Field(default=1, gt=0, description="GPUs serving the model, for per-GPU throughput.")
    ignore_eos: bool = True
    request_timeout_s: float = Field(default=6 * 3600.0, gt=0.0, description="Per-request total timeout.")
    connect_timeout_s: float = Field(default=30.0, gt=0.0)
    stall_timeout_s: float | None = Field(
        default=900.0, gt=0.0, description="Fail a request whose stream is silent this long; None: off."
    )
    seed: int = 0
    slo_ttft_ms: float | None = Field(default=None, gt=0.0)
    slo_tpot_ms: float | None = Field(default=None, gt=0.0)
    slo_e2el_ms: float | None = Field(default=None, gt=0.0)
    max_failed_fraction: float = Field(
        default=0.05, ge=0.0, le=1.0, description="Above this the point fails."
    )
    fail_on_length_violation: bool = Field(default=True, description="Any ISL/OSL mismatch fails the point.")
    workers: int | Literal["auto"] = Field(
        default="auto",
        description=f"Client processes; auto → 1, or several above {AUTO_MULTIPROCESS_ABOVE} streams.",
    )
    save_texts: bool = Field(default=False, description="Keep generated texts (costs CPU on the hot path).")
    save_detailed: bool = Field(
        default=True, description="Keep per-request lists (ttfts, itls, input_lens…)."
    )
    api_key_env: str = Field(default="OPENAI_API_KEY", description="Env var holding a bearer token, if any.")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Merged into every request body.")
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Copied to the result (like --metadata)."
    )

    @field_validator("base_url")
    @classmethod
    def _strip_url(cls, v: str) -> str:
        v = v.rstrip("/")
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {v!r}")
        return v.removesuffix("/v1")

    @field_validator("workers")
    @classmethod
    def _positive_workers(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("workers must be ≥ 1 or 'auto'")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata_safe_for_process_result(cls, v: dict[str, Any]) -> dict[str, Any]:
        # metadata lands at the result's top level, where InferenceX's process_result.py float()s every key
        # ending in "ms" and divides by every key containing "tpot"
        bad = [k for k in v if k.endswith("ms") or "tpot" in k or k == "infersweep"]
        if bad:
            raise ValueError(f"metadata keys {bad} would break InferenceX's process_result.py; rename them")
        return v

    @model_validator(mode="after")
    def _check_slos_and_workers(self) -> BenchConfig:
        if isinstance(self.workers, int) and self.workers > self.conc:
            raise ValueError(f"workers={self.workers} exceeds conc={self.conc}: each worker needs ≥ 1 stream")
        return self

    @property
    def n_prompts(self) -> int:
        """Measured requests (10·C unless given)."""
        return self.num_prompts if self.num_prompts is not None else 10 * self.conc

    @property
    def n_warmups(self) -> int:
        """Warm-up requests (2·C unless given)."""
        return self.warmups if self.warmups is not None else 2 * self.conc

    @property
    def n_workers(self) -> int:
        """Client processes actually used."""
        if isinstance(self.workers, int):
            return self.workers
        if self.conc <= AUTO_MULTIPROCESS_ABOVE:
            return 1
        import os

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(cores, math.ceil(self.conc / AUTO_MULTIPROCESS_ABOVE) * 2, self.conc))

    @property
    def endpoint(self) -> str:
        """Request path."""
        return "/v1/chat/completions" if self.chat else "/v1/completions"

    @property
    def slos_ms(self) -> dict[str, float]:
        """Goodput SLOs that are set, keyed like vLLM's --goodput (ttft/tpot/e2el)."""
        slos = {"ttft": self.slo_ttft_ms, "tpot": self.slo_tpot_ms, "e2el": self.slo_e2el_ms}
        return {k: v for k, v in slos.items() if v is not None}
