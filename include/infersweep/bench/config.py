"""`BenchConfig`: everything one benchmark point needs, validated once at the edge."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

#: Above this many concurrent streams one client process is not trusted to keep up (client-capacity.md),
#: so ``workers="auto"`` switches to the multi-process mode.
AUTO_MULTIPROCESS_ABOVE = 512

# Upper bounds of the numeric settings: absurd values are refused before any prompt is built (a typo such as
# conc=1e9 used to end in a numpy allocation traceback, rate=1e-300 in a run that never ends).
#: One client host reaches one server address:port over at most 65,535 TCP connections (16-bit source port).
MAX_CONC = 65_535
#: Prompts are built and held in memory before the run; 1M covers the 10·C default at MAX_CONC.
MAX_PROMPTS = 1_000_000
#: No served model has a context window above 10M tokens (Llama 4 Scout).
MAX_SEQ_LEN = 10_000_000
#: Prompt tokens built per point ((measured + warm-up requests) × ISL): ~7 GB of request bodies.
MAX_PROMPT_TOKENS = 1_000_000_000
#: Timeouts and the arrival schedule (num_prompts / request_rate): a point longer than a week is a typo.
MAX_DURATION_S = 7 * 24 * 3600.0
#: Per-GPU throughput divides by this; no single deployment spans more GPUs.
MAX_GPUS = 100_000
#: numpy's gamma sampler underflows to exact zeros below shape 0.01 (half the gaps at 0.001: one burst);
#: above 1000 the gaps' coefficient of variation is under 3 %: arrivals are already evenly spaced.
MIN_BURSTINESS, MAX_BURSTINESS = 0.01, 1000.0
#: The result JSON stores the seed as a 64-bit integer (and numpy wants it non-negative).
MAX_SEED = 2**63 - 1

#: Why each bounded field has its bound, and its `infersweep bench` option, for error messages.
LIMIT_REASONS: dict[str, str] = {
    "conc": "one client host can hold at most 65,535 TCP connections to one server address and port",
    "num_prompts": "every prompt is built and held in memory before the run; split the point",
    "warmups": "every prompt is built and held in memory before the run",
    "isl": "no served model has a context window above 10M tokens",
    "osl": "no served model has a context window above 10M tokens",
    "request_timeout_s": "must be finite; a request longer than a week is a typo",
    "stall_timeout_s": "must be finite; a silence longer than a week is a typo",
    "progress_interval_s": "must be finite",
    "gpus": "the value only divides throughput, and no deployment spans more GPUs",
    "burstiness": "below 0.01 numpy's gamma sampler underflows and every request arrives at once; above 1000 "
                  "arrivals are already evenly spaced",
    "seed": "the result JSON stores it as a non-negative 64-bit integer",
    "random_range_ratio": "InferenceX semantics: lengths uniform in [r·L, L], so 0 < r ≤ 1",
    "max_failed_fraction": "a fraction of the requests",
}
OPTION_NAMES: dict[str, str] = {
    "conc": "--conc", "num_prompts": "--num-prompts", "warmups": "--num-warmups", "isl": "--isl", "osl": "--osl",
    "random_range_ratio": "--random-range-ratio", "request_rate": "--request-rate", "burstiness": "--burstiness",
    "gpus": "--gpus", "prefill_gpus": "--prefill-gpus", "decode_gpus": "--decode-gpus", "seed": "--seed", "slo_ttft_ms": "--slo-ttft-ms", "slo_tpot_ms": "--slo-tpot-ms",
    "slo_e2el_ms": "--slo-e2el-ms", "workers": "--workers", "max_failed_fraction": "--max-failed-fraction",
    "request_timeout_s": "--request-timeout-s", "stall_timeout_s": "--stall-timeout-s",
    "progress_interval_s": "--progress-interval-s", "base_url": "--base-url", "model": "--model",
    "prompt_template": "--prompt-template",
    "tokenizer": "--tokenizer", "metadata": "--metadata",
}


#: Where a prompt's chat framing comes from when the client renders it (`BenchConfig.prompt_template`).
PromptTemplate = Literal["none", "tokenizer", "dsv4"]

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
    isl: int = Field(gt=0, le=MAX_SEQ_LEN, description="Input sequence length in tokens (upper bound when r < 1).")
    osl: int = Field(gt=0, le=MAX_SEQ_LEN, description="Output sequence length in tokens (upper bound when r < 1).")
    conc: int = Field(gt=0, le=MAX_CONC, description="Max concurrency C (semaphore, like --max-concurrency).")
    num_prompts: int | None = Field(
        default=None, gt=0, le=MAX_PROMPTS, description="Measured requests; None → 10·C."
    )
    warmups: int | None = Field(
        default=None, ge=0, le=MAX_PROMPTS, description="Untimed warm-up requests; None → 2·C."
    )
    random_range_ratio: float = Field(
        default=1.0, gt=0.0, le=1.0, description="InferenceX semantics: lengths uniform in [r·L, L]."
    )
    chat: bool = Field(default=False, description="Use /v1/chat/completions with the chat template.")
    prompt_template: PromptTemplate = Field(
        default="none",
        description="Client-side chat template over /v1/completions (InferenceX's --use-chat-template): "
        "'tokenizer' renders the tokenizer's template, 'dsv4' DeepSeek-V4's own framing (--dsv4); the "
        "templated prompt, template included, is exactly isl tokens and is sent as token ids.",
    )
    request_rate: float = Field(default=math.inf, gt=0.0, description="Requests/s; inf → closed loop.")
    burstiness: float = Field(
        default=1.0, ge=MIN_BURSTINESS, le=MAX_BURSTINESS, description="Gamma shape; 1 → Poisson arrivals."
    )
    gpus: int = Field(default=1, gt=0, le=MAX_GPUS, description="GPUs serving the model, for per-GPU throughput.")
    prefill_gpus: int | None = Field(
        default=None, gt=0, le=MAX_GPUS,
        description="Disaggregated serving: GPUs of the prefill pool (input throughput per GPU divides by it, "
        "as InferenceX's process_result does); None for an aggregated server.")
    decode_gpus: int | None = Field(
        default=None, ge=0, le=MAX_GPUS,
        description="Disaggregated serving: GPUs of the decode pool (output throughput per GPU divides by it; "
        "0 or None falls back to every GPU).")
    ignore_eos: bool = True
    request_timeout_s: float = Field(
        default=6 * 3600.0, gt=0.0, le=MAX_DURATION_S, description="Per-request total timeout."
    )
    connect_timeout_s: float = Field(default=30.0, gt=0.0, le=MAX_DURATION_S)
    stall_timeout_s: float | None = Field(
        default=900.0, gt=0.0, le=MAX_DURATION_S,
        description="Fail a request whose stream is silent this long, and abort the point when no request "
        "got a response for this long; None: off.",
    )
    progress_interval_s: float | None = Field(
        default=None, gt=0.0, le=MAX_DURATION_S,
        description="Print a progress line (completed/failed/in flight, elapsed) to stderr this often; None: off.",
    )
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
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
    def _check_prompt_mode(self) -> BenchConfig:
        if self.chat and self.prompt_template != "none":
            raise ValueError(f"chat=True sends messages the server templates; prompt_template="
                             f"{self.prompt_template!r} templates on the client: choose one")
        return self

    @model_validator(mode="after")
    def _check_slos_and_workers(self) -> BenchConfig:
        if isinstance(self.workers, int) and self.workers > self.conc:
            raise ValueError(f"workers={self.workers} exceeds conc={self.conc}: each worker needs ≥ 1 stream")
        return self

    @model_validator(mode="after")
    def _check_totals(self) -> BenchConfig:
        # Each field can be in bounds while the point as a whole is not (many prompts of a long ISL, or a rate
        # so low the schedule never ends); the messages name the `infersweep bench` options.
        tokens = (self.n_prompts + self.n_warmups) * self.isl
        if tokens > MAX_PROMPT_TOKENS:
            raise ValueError(f"--isl × (--num-prompts + --num-warmups) = {self.isl:,} × "
                             f"{self.n_prompts + self.n_warmups:,} = {tokens:,} prompt tokens, above the maximum of "
                             f"{MAX_PROMPT_TOKENS:,} (about 7 GB of request bodies built before the run)")
        schedule_s = self.n_prompts / self.request_rate
        if schedule_s > MAX_DURATION_S:
            raise ValueError(f"--request-rate {self.request_rate:g} spreads {self.n_prompts:,} requests over "
                             f"{schedule_s:,.0f} s, above the maximum of {MAX_DURATION_S:,.0f} s (a week); raise "
                             "--request-rate or lower --num-prompts")
        return self

    @classmethod
    def explain(cls, exc: ValidationError) -> list[str]:
        """One line per problem of a failed validation, naming the `infersweep bench` option, the bound and
        why it exists (pydantic's own text names the field and the constraint only)."""
        lines = []
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else ""
            msg = err["msg"].removeprefix("Value error, ")
            if not field:  # a whole-model rule: its message is already written for the command line
                lines.append(msg)
                continue
            option = OPTION_NAMES.get(field, field)
            ctx = err.get("ctx") or {}
            value = err.get("input")
            shown = f"{value:g}" if isinstance(value, float) else str(value) if isinstance(value, int) else repr(value)
            unit = " s" if field.endswith("_s") else ""
            if isinstance(value, float) and math.isnan(value):
                text = f"{option} nan is not a number"
            elif err["type"] in ("less_than_equal", "less_than"):
                bound = ctx.get("le", ctx.get("lt"))
                text = f"{option} {shown} is above the maximum of {_num(bound)}{unit}"
            elif err["type"] in ("greater_than", "greater_than_equal"):
                bound = ctx.get("gt", ctx.get("ge"))
                sign = ">" if err["type"] == "greater_than" else "≥"
                text = f"{option} {shown} is out of range: it must be {sign} {_num(bound)}{unit}"
            else:
                text = f"{option} {shown}: {msg}"
            reason = LIMIT_REASONS.get(field) if err["type"].startswith(("less_", "greater_")) else None
            lines.append(f"{text} ({reason})" if reason else text)
        return lines

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


def _num(x: object) -> str:
    """A bound for a message: thousands separators, no trailing ``.0``."""
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return f"{x:,}" if isinstance(x, int) else str(x)
