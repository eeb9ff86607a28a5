"""The InferenceX master-config schema (`nvidia-master.yaml`, `amd-master.yaml`), read unchanged.

Each top-level key is a *config key* (`<model-prefix>-<precision>-<gpu>-<framework>[-mtp]`) mapping to
one `MasterEntry`. Field names are the YAML keys (aliases); Python attributes use `_`. The schema is a
superset of what the reference `utils/matrix_logic/validation.py` accepts around PR #1731, plus the
fields later snapshots added (router, kv-p2p-transfer, kv-offloading, dram-utilization, pp/dcp/pcp),
so newer master files validate too. Pydantic checks shape and types; `entry_problems()` checks the
cross-field rules with precise paths (single- vs multi-node topology, disagg, spec-decoding).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic import model_validator as _model_validator

from infersweep.config.errors import PathPart

PositiveInt = Annotated[StrictInt, Field(gt=0)]
SpecDecoding = Literal["none", "mtp", "draft_model"]
SPEC_DECODING_VALUES: tuple[str, ...] = ("none", "mtp", "draft_model")
#: Agentic `offloading` values seen in InferenceX master files (the reference's list grew over time).
OFFLOADING_VALUES = Literal["none", "cpu", "ssd", "dram", "hicache", "lmcache"]

# Only these two shapes are live in InferenceX (`seq_len_stoi`); others get `<isl>_<osl>` names.
SEQ_LEN_NAMES: dict[tuple[int, int], str] = {(1024, 1024): "1k1k", (8192, 1024): "8k1k"}
SEQ_LENS: dict[str, tuple[int, int]] = {v: k for k, v in SEQ_LEN_NAMES.items()}


class FieldProblem(ValueError):
    """A validator failure that also says what would be accepted (shown as `allowed:`)."""

    def __init__(self, message: str, allowed: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.allowed = allowed


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Router(_Strict):
    """Router metadata (name + released version); informational for single-node vLLM."""

    name: StrictStr
    version: StrictStr


class KvOffloadBackend(_Strict):
    name: StrictStr
    version: StrictStr | None = None


class WorkerConfig(_Strict):
    """One prefill or decode pool of a multinode (disaggregated) point."""

    # 0 is legal: aggregated (non-disagg) multinode rows carry an empty decode pool.
    num_worker: Annotated[StrictInt, Field(ge=0)] = Field(alias="num-worker")
    tp: PositiveInt
    ep: PositiveInt
    dp_attn: StrictBool = Field(alias="dp-attn")
    pp: PositiveInt = 1
    dcp_size: PositiveInt = Field(default=1, alias="dcp-size")
    pcp_size: PositiveInt = Field(default=1, alias="pcp-size")
    hardware: StrictStr | None = None
    batch_size: PositiveInt | None = Field(default=None, alias="batch-size")
    max_num_tokens: PositiveInt | None = Field(default=None, alias="max-num-tokens")
    additional_settings: tuple[StrictStr, ...] = Field(default=(), alias="additional-settings")


class _ConcRange(_Strict):
    """`conc-start`/`conc-end` (geometric ×2, end clamped) or an explicit `conc-list`, never both."""

    conc_start: PositiveInt | None = Field(default=None, alias="conc-start")
    conc_end: PositiveInt | None = Field(default=None, alias="conc-end")
    conc_list: tuple[PositiveInt, ...] | None = Field(default=None, alias="conc-list", min_length=1)

    @_model_validator(mode="after")
    def _check_conc(self) -> _ConcRange:
        has_start, has_end = self.conc_start is not None, self.conc_end is not None
        if self.conc_list is not None and (has_start or has_end):
            raise FieldProblem("conc-list cannot be combined with conc-start/conc-end",
                               "either conc-list: [..] or conc-start + conc-end")
        if self.conc_list is None:
            if not has_start and not has_end:
                raise FieldProblem("no concurrency given", "conc-list: [..], or conc-start and conc-end")
            if has_start != has_end:
                missing = "conc-end" if has_start else "conc-start"
                raise FieldProblem(f"{missing} is missing; conc-start and conc-end go together",
                                   f"add {missing}, or use conc-list")
            assert self.conc_start is not None and self.conc_end is not None
            if self.conc_start > self.conc_end:
                raise FieldProblem(f"conc-start ({self.conc_start}) is greater than conc-end ({self.conc_end})",
                                   "conc-start <= conc-end")
        return self


class FixedSeqLenPoint(_ConcRange):
    """One search-space point: a parallel layout (+ spec decoding) swept over concurrencies."""

    tp: PositiveInt | None = None
    ep: PositiveInt | None = Field(default=None, description="None = unset; InferenceX defaults it to 1")
    dp_attn: StrictBool | None = Field(default=None, alias="dp-attn")
    pp: PositiveInt = 1
    dcp_size: PositiveInt = Field(default=1, alias="dcp-size")
    pcp_size: PositiveInt = Field(default=1, alias="pcp-size")
    spec_decoding: SpecDecoding = Field(default="none", alias="spec-decoding")
    num_speculative_tokens: PositiveInt | None = Field(default=None, alias="num-speculative-tokens")
    max_num_batched_tokens: PositiveInt | None = Field(default=None, alias="max-num-batched-tokens")
    prefill: WorkerConfig | None = None
    decode: WorkerConfig | None = None
    router: Router | None = None
    kv_p2p_transfer: StrictStr | None = Field(default=None, alias="kv-p2p-transfer")


class AgenticPoint(FixedSeqLenPoint):
    """An agentic-coding (trace replay) point; single-node (tp) or multinode (prefill + decode)."""

    offloading: OFFLOADING_VALUES = "none"
    kv_offloading: Literal["none", "dram"] | None = Field(default=None, alias="kv-offloading")
    kv_offload_backend: KvOffloadBackend | None = Field(default=None, alias="kv-offload-backend")


class FixedSeqLen(_Strict):
    isl: PositiveInt
    osl: PositiveInt
    search_space: tuple[FixedSeqLenPoint, ...] = Field(alias="search-space", min_length=1)


class AgenticCoding(_Strict):
    duration: PositiveInt = 1800
    trace_source: StrictStr | None = Field(default=None, alias="trace-source")
    dram_utilization: Annotated[StrictFloat, Field(gt=0, le=1)] | None = Field(default=None, alias="dram-utilization")
    search_space: tuple[AgenticPoint, ...] = Field(alias="search-space", min_length=1)


class Scenarios(_Strict):
    fixed_seq_len: tuple[FixedSeqLen, ...] = Field(default=(), alias="fixed-seq-len")
    agentic_coding: tuple[AgenticCoding, ...] = Field(default=(), alias="agentic-coding")

    @_model_validator(mode="after")
    def _at_least_one(self) -> Scenarios:
        if not self.fixed_seq_len and not self.agentic_coding:
            raise FieldProblem("no scenario given", "fixed-seq-len and/or agentic-coding")
        return self


class MasterEntry(_Strict):
    """One InferenceX config key: what to serve (image, model), where (runner) and what to sweep."""

    image: StrictStr
    model: StrictStr
    model_prefix: StrictStr = Field(alias="model-prefix", min_length=1)
    runner: StrictStr = Field(min_length=1)
    precision: StrictStr = Field(min_length=1)
    framework: StrictStr = Field(min_length=1)
    multinode: StrictBool
    disagg: StrictBool = False
    router: Router | None = None
    kv_p2p_transfer: StrictStr | None = Field(default=None, alias="kv-p2p-transfer")
    scenarios: Scenarios

    @field_validator("image")
    @classmethod
    def _image_has_tag(cls, v: str) -> str:
        last = v.rsplit("/", 1)[-1]
        if not v or any(c.isspace() for c in v):
            raise FieldProblem(f"{v!r} is not an image reference", "registry/name:tag")
        if ":" not in last and "@" not in last:
            raise FieldProblem(f"image {v!r} has no tag; untagged images make results untraceable",
                               f"a pinned tag or digest, e.g. {v}:<tag> or {v}@sha256:<digest>")
        return v

    @field_validator("model_prefix")
    @classmethod
    def _prefix_is_a_code(cls, v: str) -> str:
        if any(c.isspace() or c == "/" for c in v):
            raise FieldProblem(f"model-prefix {v!r} must be a short code", "e.g. dsr1, gptoss, minimaxm3")
        return v

    def to_yaml_dict(self) -> dict[str, object]:
        """The entry as InferenceX YAML data (aliases, unset fields dropped)."""
        return self.model_dump(by_alias=True, exclude_defaults=True, mode="json")


Problem = tuple[tuple[PathPart, ...], str, str | None]


def entry_problems(entry: MasterEntry) -> list[Problem]:
    """Cross-field rules pydantic cannot express per field; each problem has its path inside the entry."""
    out: list[Problem] = []
    if entry.disagg and not entry.multinode:
        out.append((("disagg",), "true requires multinode: true (disaggregated prefill/decode spans nodes)",
                    "set multinode: true (with prefill/decode blocks), or drop disagg"))
    if entry.kv_p2p_transfer is not None and not entry.multinode:
        out.append((("kv-p2p-transfer",), "kv-p2p-transfer only applies to multinode entries",
                    "drop it, or set multinode: true"))
    for i, cfg in enumerate(entry.scenarios.fixed_seq_len):
        for j, point in enumerate(cfg.search_space):
            base: tuple[PathPart, ...] = ("scenarios", "fixed-seq-len", i, "search-space", j)
            out.extend(_point_problems(point, base, multinode=entry.multinode, framework=entry.framework))
    for i, acfg in enumerate(entry.scenarios.agentic_coding):
        for j, apoint in enumerate(acfg.search_space):
            base = ("scenarios", "agentic-coding", i, "search-space", j)
            out.extend(_point_problems(apoint, base, multinode=None, framework=entry.framework))
    return out


#: Frameworks whose single-node servers shard attention heads over `tp` ranks (vLLM: `--tensor-parallel-size`).
POWER_OF_TWO_TP_FRAMEWORKS = frozenset({"vllm"})


def _point_problems(point: FixedSeqLenPoint, base: tuple[PathPart, ...], *, multinode: bool | None,
                    framework: str) -> list[Problem]:
    out: list[Problem] = []
    has_pd = point.prefill is not None or point.decode is not None
    if point.num_speculative_tokens is not None and point.spec_decoding == "none":
        out.append(((*base, "num-speculative-tokens"), "num-speculative-tokens needs spec-decoding",
                    "set spec-decoding: mtp or draft_model, or drop num-speculative-tokens"))
    # Agentic points (multinode=None) follow the reference rule: tp xor (prefill and decode).
    single = (not multinode) if multinode is not None else point.tp is not None
    if single:
        if point.tp is None:
            out.append((base, "single-node point has no tp", "add tp: <tensor-parallel size>"))
        if has_pd:
            key = "prefill" if point.prefill is not None else "decode"
            out.append(((*base, key), f"{key} blocks are only valid in multinode entries",
                        "use tp/ep/dp-attn here, or set multinode: true"))
        if point.kv_p2p_transfer is not None:
            out.append(((*base, "kv-p2p-transfer"), "kv-p2p-transfer only applies to multinode entries", "drop it"))
        # vLLM splits the attention heads evenly over the TP ranks and refuses to start when they do not
        # divide ("Total number of attention heads (32) must be divisible by tensor parallel size (6)"); head
        # counts are powers of two, so a tp of 3, 6 or 12 would only fail after a GPU node was booked. Under
        # DP attention tp is the data-parallel size (vLLM runs TP 1 per rank), which has no such rule.
        tp = point.tp
        if (framework in POWER_OF_TWO_TP_FRAMEWORKS and tp is not None and not point.dp_attn
                and tp & (tp - 1) != 0):
            lower, upper = 1 << (tp.bit_length() - 1), 1 << tp.bit_length()
            out.append(((*base, "tp"), f"tp {tp} is not a power of two; {framework} shards attention heads evenly "
                        "over the tensor-parallel ranks and fails at start-up when they do not divide",
                        f"tp: {lower} or {upper} (1, 2, 4, 8, ...), or dp-attn: true for data-parallel attention"))
    else:
        for key in ("prefill", "decode"):
            if getattr(point, key) is None:
                out.append((base, f"multinode point has no {key} block",
                            "prefill: {num-worker, tp, ep, dp-attn} and decode: {...}"))
        for key, value in (("tp", point.tp), ("ep", point.ep), ("dp-attn", point.dp_attn)):
            if value is not None:
                out.append(((*base, key), f"{key} is set per worker pool in multinode entries",
                            f"move {key} into the prefill/decode blocks"))
    return out


def seq_len_name(isl: int, osl: int) -> str:
    """InferenceX's short name for a shape: 1k1k, 8k1k, else `<isl>_<osl>`."""
    return SEQ_LEN_NAMES.get((isl, osl), f"{isl}_{osl}")


def concurrencies(point: _ConcRange, *, step: int = 2) -> list[int]:
    """The point's concurrencies before filters: the list as given, or start ×step while ≤ end, end clamped."""
    if point.conc_list is not None:
        return list(point.conc_list)
    assert point.conc_start is not None and point.conc_end is not None
    return geometric(point.conc_start, point.conc_end, step=step)


def geometric(start: int, end: int, *, step: int = 2) -> list[int]:
    """4..100 → [4, 8, 16, 32, 64, 100]: multiply while ≤ end; an overshoot is clamped to end."""
    out: list[int] = []
    conc = start
    while conc <= end:
        out.append(conc)
        if conc == end:
            break
        conc *= step
        if conc > end:
            conc = end
    return out
