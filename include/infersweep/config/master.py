"""The InferenceX master-config schema (`nvidia-master.yaml`, `amd-master.yaml`), read unchanged.

Each top-level key is a *config key* (`<model-prefix>-<precision>-<gpu>-<framework>[-mtp]`) mapping to
one `MasterEntry`. Field names are the YAML keys (aliases); Python attributes use `_`.

The schema follows upstream's `utils/matrix_logic/validation.py` as of commit 843c6254f (2026-08-21),
and still reads the June 2026 files (commit 1ef98e3ed): their agentic `duration` and `offloading` are
kept as *legacy* fields. docs/sweep-config.md has the changelog of the upstream versions followed.

Every field declares, in its `json_schema_extra`, what it changes here (`FIELD_EFFECTS`):

- `row`: the planned job rows (`plan --format inferencex`), hence the serve groups and the recipe;
- `multinode`: the multinode rows (planned like upstream, not executed yet); refused in single-node entries;
- `container`: a mapping/list whose own fields carry the effect.

tests/config/test_field_effects.py enumerates the schema and proves each declared effect, so a new
upstream field is one `Field(...)` line here plus, if it reaches the row, one key in `plan/models.py`.
Pydantic checks shape and types; `entry_problems()` checks the cross-field rules with precise paths.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)
from pydantic import model_validator as _model_validator

from infersweep.config import names
from infersweep.config.errors import PathPart
from infersweep.faults.errors import InfersweepError

SpecDecoding = Literal["none", "mtp", "draft_model"]
SPEC_DECODING_VALUES: tuple[str, ...] = ("none", "mtp", "draft_model")
#: June 2026 agentic `offloading` values (upstream replaced the field by kv-offloading + kv-offload-backend).
LegacyOffloading = Literal["none", "cpu", "ssd", "lmcache", "lmcache-mp", "hicache"]
KvOffloading = Literal["none", "dram"]
#: Upstream's default agentic trace-replay duration since the `duration` key was removed (843c6254f).
DEFAULT_AGENTIC_DURATION_S = 3600
#: June 2026 default when a legacy agentic config left `duration` out.
LEGACY_AGENTIC_DURATION_S = 1800

# Only these two shapes are live in InferenceX (`seq_len_stoi`); others get `<isl>_<osl>` names.
SEQ_LEN_NAMES: dict[tuple[int, int], str] = {(1024, 1024): "1k1k", (8192, 1024): "8k1k"}
SEQ_LENS: dict[str, tuple[int, int]] = {v: k for k, v in SEQ_LEN_NAMES.items()}

Effect = Literal["row", "multinode", "container"]


def _f(default: Any = ..., *, effect: Effect, alias: str | None = None, **kw: Any) -> Any:
    """A schema field with its declared effect (see the module docstring)."""
    return Field(default, alias=alias, json_schema_extra={"effect": effect}, **kw)


class FieldProblem(InfersweepError, ValueError):
    """A validator failure that also says what would be accepted (shown as `allowed:`)."""

    kind = "config_error"
    transient = False

    def __init__(self, message: str, allowed: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.allowed = allowed


# Upper bounds: generous, but far below values that would expand, allocate or wait without end. Each message
# says why (the largest values of the InferenceX master files are in parentheses).
#: tp, ep, pp, dcp-size, pcp-size (and per worker pool): GPUs. The largest scale-up domain sold today is 576
#: GPUs (NVL576); the master files use at most 56.
MAX_PARALLEL = 1024
#: num-worker of a multinode pool (the master files use at most 17).
MAX_WORKERS = 1024
#: Concurrent requests: one client host has 65,536 ports to open connections from (files use at most 16,500).
MAX_CONCURRENCY = 65_536
#: conc-list items: each is a benchmark run of its own (files use at most 19).
MAX_CONC_LIST = 256
#: isl/osl tokens: the longest context windows are 10M tokens (files use at most 8,192).
MAX_SEQ_TOKENS = 10_000_000
#: Legacy agentic `duration`: one week (files use 1,800 s; upstream runs 3,600 s).
MAX_DURATION_S = 7 * 24 * 3600


def at_most(limit: int, why: str) -> AfterValidator:
    """An upper bound whose message says why it exists (a plain `le=` would only say "at most")."""
    def check(value: int) -> int:
        if value > limit:
            raise FieldProblem(f"must be at most {limit:,}, got {names.short_int(value)}: {why}", f"a value <= {limit:,}")
        return value
    return AfterValidator(check)


_WHY_PARALLEL = "a parallel size counts GPUs, and the largest GPU domain sold today has 576"
ParallelSize = Annotated[StrictInt, Field(gt=0), at_most(MAX_PARALLEL, _WHY_PARALLEL)]
Concurrency = Annotated[StrictInt, Field(gt=0), at_most(
    MAX_CONCURRENCY, "one client host cannot hold more connections open (65,536 ports)")]
SeqTokens = Annotated[StrictInt, Field(gt=0), at_most(
    MAX_SEQ_TOKENS, "longer than any model's context window (the longest are 10M tokens)")]
WorkerCount = Annotated[StrictInt, Field(ge=0), at_most(MAX_WORKERS, "more worker replicas than any cluster holds")]
DurationS = Annotated[StrictInt, Field(gt=0), at_most(
    MAX_DURATION_S, "a run longer than a week would hold its nodes for days")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _not_an_image(version: str | None) -> str | None:
    # Upstream: a component's version is its own release or commit; the image is recorded separately.
    if version is not None and version.startswith("image:"):
        raise FieldProblem(f"version {version!r} is an image reference",
                           "the component's own release, package version or source commit, e.g. 0.3.2")
    return version


class Router(_Strict):
    """A request router / frontend in front of the engine (e.g. vllm-router, sglang-router): name and release."""

    name: StrictStr = _f(effect="row", min_length=1)
    version: StrictStr = _f(effect="row", min_length=1)

    @field_validator("version")
    @classmethod
    def _release(cls, v: str) -> str:
        _not_an_image(v)
        return v


class KvOffloadBackend(_Strict):
    """The KV-cache offload backend of an agentic point (e.g. lmcache, hicache), with its own version."""

    name: StrictStr = _f(effect="row", min_length=1)
    version: StrictStr | None = _f(None, effect="row", min_length=1)

    @field_validator("version")
    @classmethod
    def _release(cls, v: str | None) -> str | None:
        return _not_an_image(v)


class WorkerConfig(_Strict):
    """One prefill or decode pool of a multinode (disaggregated) point."""

    # The YAML key order: the generator writes a pool back as written (then pp/dcp/pcp), and so do we.
    _yaml_order: tuple[str, ...] = PrivateAttr(default=())

    @_model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: Any) -> Any:
        worker = handler(data)
        if isinstance(data, dict) and not worker._yaml_order:
            worker._yaml_order = tuple(str(k) for k in data)
        return worker

    @property
    def yaml_order(self) -> tuple[str, ...]:
        """The keys as the config wrote them (empty for a pool built in code)."""
        return self._yaml_order

    # 0 is legal: aggregated (non-disagg) multinode rows carry an empty decode pool.
    num_worker: WorkerCount = _f(effect="multinode", alias="num-worker")
    tp: ParallelSize = _f(effect="multinode")
    ep: ParallelSize = _f(effect="multinode")
    dp_attn: StrictBool = _f(effect="multinode", alias="dp-attn")
    pp: ParallelSize = _f(1, effect="multinode")
    dcp_size: ParallelSize = _f(1, effect="multinode", alias="dcp-size")
    pcp_size: ParallelSize = _f(1, effect="multinode", alias="pcp-size")
    hardware: StrictStr | None = _f(None, effect="multinode", min_length=1)
    additional_settings: tuple[StrictStr, ...] = _f((), effect="multinode", alias="additional-settings")


class _ConcRange(_Strict):
    """`conc-start`/`conc-end` (geometric ×2, end clamped) or an explicit `conc-list`, never both.

    With both ends at most MAX_CONCURRENCY and a step of at least 2 (PlanFilters.step_size > 1), a range
    expands to at most 17 concurrencies (1, 2, 4, ..., 65,536)."""

    conc_start: Concurrency | None = _f(None, effect="row", alias="conc-start")
    conc_end: Concurrency | None = _f(None, effect="row", alias="conc-end")
    conc_list: tuple[Concurrency, ...] | None = _f(None, effect="row", alias="conc-list", min_length=1)

    @_model_validator(mode="after")
    def _check_conc(self) -> _ConcRange:
        has_start, has_end = self.conc_start is not None, self.conc_end is not None
        if self.conc_list is not None and (has_start or has_end):
            raise FieldProblem("conc-list cannot be combined with conc-start/conc-end",
                               "either conc-list: [..] or conc-start + conc-end")
        if self.conc_list is not None and len(self.conc_list) > MAX_CONC_LIST:
            raise FieldProblem(f"conc-list has {len(self.conc_list):,} values, more than {MAX_CONC_LIST}: each "
                               "concurrency is a benchmark run of its own",
                               f"at most {MAX_CONC_LIST} values, or conc-start/conc-end for a doubling range")
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

    tp: ParallelSize | None = _f(None, effect="row")
    ep: ParallelSize | None = _f(None, effect="row", description="None = unset; InferenceX defaults it to 1")
    dp_attn: StrictBool | None = _f(None, effect="row", alias="dp-attn")
    pp: ParallelSize = _f(1, effect="row")
    dcp_size: ParallelSize = _f(1, effect="row", alias="dcp-size")
    pcp_size: ParallelSize = _f(1, effect="row", alias="pcp-size")
    spec_decoding: SpecDecoding = _f("none", effect="row", alias="spec-decoding")
    router: Router | None = _f(None, effect="row")
    kv_p2p_transfer: StrictStr | None = _f(None, effect="multinode", alias="kv-p2p-transfer", min_length=1)
    prefill: WorkerConfig | None = _f(None, effect="multinode")
    decode: WorkerConfig | None = _f(None, effect="multinode")


class AgenticPoint(FixedSeqLenPoint):
    """An agentic-coding (trace replay) point; single-node (tp) or multinode (prefill + decode)."""

    kv_offloading: KvOffloading | None = _f(None, effect="row", alias="kv-offloading")
    kv_offload_backend: KvOffloadBackend | None = _f(None, effect="row", alias="kv-offload-backend")
    offloading: LegacyOffloading | None = _f(
        None, effect="row", description="June 2026 schema; replaced upstream by kv-offloading + kv-offload-backend")

    @property
    def legacy(self) -> bool:
        """Written in the June 2026 agentic schema (rows keep that generator's shape)."""
        return self.offloading is not None


class FixedSeqLen(_Strict):
    isl: SeqTokens = _f(effect="row")
    osl: SeqTokens = _f(effect="row")
    search_space: tuple[FixedSeqLenPoint, ...] = _f(effect="container", alias="search-space", min_length=1)


class AgenticCoding(_Strict):
    # Upstream dropped `duration` (every run is DEFAULT_AGENTIC_DURATION_S); June files still set it.
    duration: DurationS | None = _f(None, effect="row")
    dram_utilization: Annotated[StrictFloat, Field(gt=0, le=1)] | None = _f(
        None, effect="row", alias="dram-utilization",
        description="share of the node's CPU DRAM a dram-offloading server may use (total-cpu-dram-gb)")
    search_space: tuple[AgenticPoint, ...] = _f(effect="container", alias="search-space", min_length=1)


class Scenarios(_Strict):
    fixed_seq_len: tuple[FixedSeqLen, ...] = _f((), effect="container", alias="fixed-seq-len")
    agentic_coding: tuple[AgenticCoding, ...] = _f((), effect="container", alias="agentic-coding")

    @_model_validator(mode="after")
    def _at_least_one(self) -> Scenarios:
        if not self.fixed_seq_len and not self.agentic_coding:
            raise FieldProblem("no scenario given", "fixed-seq-len and/or agentic-coding")
        return self


class MasterEntry(_Strict):
    """One InferenceX config key: what to serve (image, model), where (runner) and what to sweep."""

    image: StrictStr = _f(effect="row")
    model: StrictStr = _f(effect="row")
    model_prefix: StrictStr = _f(effect="row", alias="model-prefix", min_length=1)
    runner: StrictStr = _f(effect="row", min_length=1)
    precision: StrictStr = _f(effect="row", min_length=1)
    framework: StrictStr = _f(effect="row", min_length=1)
    multinode: StrictBool = _f(effect="row")
    disagg: StrictBool = _f(False, effect="multinode")
    router: Router | None = _f(None, effect="row")
    kv_p2p_transfer: StrictStr | None = _f(None, effect="multinode", alias="kv-p2p-transfer", min_length=1)
    scenarios: Scenarios = _f(effect="container")

    @field_validator("image")
    @classmethod
    def _image_has_tag(cls, v: str) -> str:
        return _image_ref(v, "image")

    @field_validator("model")
    @classmethod
    def _model_id(cls, v: str) -> str:
        problem = names.check_model(v)
        if problem:
            raise FieldProblem(f"model {names.quote(v)} {problem}", names.MODEL_ALLOWED)
        return v

    # model-prefix, runner, framework and precision become the DAG's tags (and store columns).
    @field_validator("model_prefix")
    @classmethod
    def _prefix_is_a_code(cls, v: str) -> str:
        return _tag(v, "model-prefix", example="dsr1, gptoss, minimaxm3")

    @field_validator("runner")
    @classmethod
    def _runner_tag(cls, v: str) -> str:
        return _tag(v, "runner", example="h200, cluster:b300-nv")

    @field_validator("precision")
    @classmethod
    def _precision_tag(cls, v: str) -> str:
        return _tag(v, "precision", max_len=names.PRECISION_MAX, example="fp4, fp8, bf16")

    @field_validator("framework")
    @classmethod
    def _known_framework(cls, v: str) -> str:
        problem = names.check_framework(v)
        if problem:
            raise FieldProblem(f"framework {names.quote(v)} {problem}", names.framework_allowed(v))
        return v

    def to_yaml_dict(self) -> dict[str, object]:
        """The entry as InferenceX YAML data (aliases, unset fields dropped)."""
        return self.model_dump(by_alias=True, exclude_defaults=True, mode="json")

    def points(self) -> list[tuple[tuple[PathPart, ...], FixedSeqLenPoint]]:
        """Every search-space point (fixed-seq-len and agentic) with its path inside the entry."""
        out: list[tuple[tuple[PathPart, ...], FixedSeqLenPoint]] = []
        for i, fcfg in enumerate(self.scenarios.fixed_seq_len):
            out.extend((("scenarios", "fixed-seq-len", i, "search-space", j), p) for j, p in enumerate(fcfg.search_space))
        for i, acfg in enumerate(self.scenarios.agentic_coding):
            out.extend((("scenarios", "agentic-coding", i, "search-space", j), p) for j, p in enumerate(acfg.search_space))
        return out


def _image_ref(value: str, what: str) -> str:
    """An image reference that follows Docker's grammar and is pinned (tag or digest); `what` names it."""
    problem = names.check_image(value)
    if problem:
        raise FieldProblem(f"{what} {names.quote(value)} is not a Docker image reference: it {problem}",
                           names.IMAGE_ALLOWED)
    if not names.image_is_pinned(value):
        raise FieldProblem(f"{what} {value!r} has no tag; untagged images make results untraceable",
                           f"a pinned tag or digest, e.g. {value}:<tag> or {value}@sha256:<digest>")
    return value


def _tag(value: str, what: str, *, max_len: int = names.TAG_MAX, example: str = "") -> str:
    problem = names.check_tag(value, max_len)
    if problem:
        raise FieldProblem(f"{what} {names.quote(value)} cannot be an Airflow DAG tag: it {problem}",
                           names.tag_allowed(max_len, example))
    return value


#: Every model of the schema; each field declares its effect (docs and tests/config/test_field_effects.py).
SCHEMA_MODELS: tuple[type[BaseModel], ...] = (
    MasterEntry, Scenarios, FixedSeqLen, FixedSeqLenPoint, AgenticCoding, AgenticPoint, WorkerConfig, Router,
    KvOffloadBackend,
)


def field_effect(model: type[BaseModel], name: str) -> Effect:
    """The declared effect of `model`'s field `name` (Python name)."""
    extra = model.model_fields[name].json_schema_extra
    assert isinstance(extra, dict), f"{model.__name__}.{name} declares no effect"
    return extra["effect"]  # type: ignore[return-value]


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
    # Upstream: a component is declared once, for the whole entry or per point, never both.
    for key, attr in (("router", "router"), ("kv-p2p-transfer", "kv_p2p_transfer")):
        if getattr(entry, attr) is not None:
            for path, point in entry.points():
                if getattr(point, attr) is not None:
                    out.append(((*path, key), f"{key} is set at the top level and in this search-space entry",
                                f"declare {key} either at the top level or in the search-space entries, not both"))
    for i, cfg in enumerate(entry.scenarios.fixed_seq_len):
        for j, point in enumerate(cfg.search_space):
            base: tuple[PathPart, ...] = ("scenarios", "fixed-seq-len", i, "search-space", j)
            out.extend(_point_problems(point, base, multinode=entry.multinode, framework=entry.framework))
    for i, acfg in enumerate(entry.scenarios.agentic_coding):
        for j, apoint in enumerate(acfg.search_space):
            base = ("scenarios", "agentic-coding", i, "search-space", j)
            out.extend(_point_problems(apoint, base, multinode=None, framework=entry.framework))
            out.extend(_agentic_problems(acfg, apoint, base, ("scenarios", "agentic-coding", i)))
    return out


#: Frameworks whose single-node servers shard attention heads over `tp` ranks (vLLM: `--tensor-parallel-size`).
POWER_OF_TWO_TP_FRAMEWORKS = frozenset({"vllm"})


def _dcp_divides_tp(tp: int, dcp: int, path: tuple[PathPart, ...]) -> list[Problem]:
    # Upstream's `_validate_tp_context_topology`: decode-context parallelism splits the TP ranks.
    if tp % dcp:
        return [((*path, "dcp-size"), f"tp ({tp}) must be divisible by dcp-size ({dcp})",
                 "a dcp-size that divides tp (1, 2, 4, ...)")]
    return []


def _point_problems(point: FixedSeqLenPoint, base: tuple[PathPart, ...], *, multinode: bool | None,
                    framework: str) -> list[Problem]:
    out: list[Problem] = []
    has_pd = point.prefill is not None or point.decode is not None
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
        tp = point.tp
        if tp is not None:
            out.extend(_dcp_divides_tp(tp, point.dcp_size, base))
        # vLLM splits the attention heads evenly over the TP ranks and refuses to start when they do not
        # divide ("Total number of attention heads (32) must be divisible by tensor parallel size (6)"); head
        # counts are powers of two, so a tp of 3, 6 or 12 would only fail after a GPU node was booked. Under
        # DP attention tp is the data-parallel size (vLLM runs TP 1 per rank), which has no such rule.
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
        for key, attr in (("prefill", point.prefill), ("decode", point.decode)):
            if attr is not None:
                out.extend(_dcp_divides_tp(attr.tp, attr.dcp_size, (*base, key)))
        if point.prefill is not None and point.decode is not None and (
                (point.prefill.hardware is None) != (point.decode.hardware is None)):
            out.append((base, "hardware is set on one pool only",
                        "set hardware on both prefill and decode, or on neither"))
    return out


def _agentic_problems(cfg: AgenticCoding, point: AgenticPoint, base: tuple[PathPart, ...],
                      cfg_path: tuple[PathPart, ...]) -> list[Problem]:
    """Upstream's agentic rules: kv-offloading on single-node points, its backend, and the DRAM budget."""
    out: list[Problem] = []
    if point.offloading is not None and (point.kv_offloading is not None or point.kv_offload_backend is not None):
        out.append(((*base, "offloading"), "offloading (June 2026 schema) cannot be combined with kv-offloading",
                    "kv-offloading: none | dram with kv-offload-backend: {name, version}"))
        return out
    if point.tp is None:
        # Upstream: pp/dcp/pcp of a multinode agentic point belong to its worker pools.
        for key in ("pp", "dcp_size", "pcp_size"):
            if key in point.model_fields_set:
                name = key.replace("_", "-")
                out.append(((*base, name), f"{name} is set per worker pool in multinode entries",
                            f"move {name} into the prefill/decode blocks"))
    elif point.kv_offloading is None and point.offloading is None:
        out.append((base, "single-node agentic point has no kv-offloading", "kv-offloading: none or dram"))
    backend, mode = point.kv_offload_backend, point.kv_offloading
    if backend is not None and mode in (None, "none"):
        out.append(((*base, "kv-offload-backend"), "kv-offload-backend needs kv-offloading: dram",
                    "set kv-offloading: dram, or drop kv-offload-backend"))
    if mode == "dram":
        if backend is None:
            out.append(((*base, "kv-offloading"), "kv-offloading: dram needs a kv-offload-backend",
                        "kv-offload-backend: {name: lmcache, version: ...}"))
        if cfg.dram_utilization is None:
            out.append(((*cfg_path, "dram-utilization"), "kv-offloading: dram needs dram-utilization",
                        "dram-utilization: 0 < share <= 1 (with the runner's hardware facts in runners.yaml)"))
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
