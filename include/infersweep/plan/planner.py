"""Expand validated master entries into jobs, exactly as InferenceX's matrix generator does.

Reference: `utils/matrix_logic/generate_sweep_configs.py full-sweep` (and `test-config` for
`--config-keys`) around PR #1731. One single-node job = one (config key, isl/osl, search-space point,
conc). Rows come out in the reference order: config key → seq-len config → point → conc. Filters keep
the reference's semantics, including its quirks:

- `model_prefix` matches the *config key's* start (`key.startswith(prefix)`), as the reference does;
- `max_tp` skips points; `max_ep` clamps ep (an unset ep stays the default 1);
- `min_conc` raises a range's start (a range ending below it is skipped); `max_conc` lowers its end,
  and when the whole range/list is above max-conc, max-conc itself is used;
- eval marking runs over the filtered single-node rows (`mark_eval`).

Agentic-coding points of single-node entries are planned row for row (`Expansion.agentic`, upstream
843c6254f: kv-offloading, the DRAM budget `total-cpu-dram-gb` from runners.yaml `hardware:`, the 3,600 s
default duration) but not executed yet. Multinode entries are validated and counted in reference rows
(`Unsupported`). Nothing is silently dropped.
"""

from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infersweep.config.master import (
    DEFAULT_AGENTIC_DURATION_S,
    LEGACY_AGENTIC_DURATION_S,
    SEQ_LENS,
    AgenticCoding,
    AgenticPoint,
    FixedSeqLenPoint,
    MasterEntry,
    WorkerConfig,
    concurrencies,
    geometric,
    seq_len_name,
)
from infersweep.config.runners import NodeFitError, RunnerHardware
from infersweep.faults.errors import InfersweepError
from infersweep.plan.groups import server_tuple
from infersweep.plan.models import AGENTIC, AgenticJob, Job, MultinodeJob

MIN_EVAL_CONC = 16
EVAL_SEQ_LEN = SEQ_LENS["8k1k"]
SeqLenName = Literal["1k1k", "8k1k"]


class PlanFilterError(InfersweepError, ValueError):
    """A filter that cannot apply to the loaded configs (unknown runner label, glob matching nothing)."""

    kind = "config_error"
    transient = False


class PlanFilters(BaseModel):
    """The reference generator's filters. Empty tuples / None mean "no filter"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config_keys: tuple[str, ...] = Field(default=(), description="exact keys or globs (test-config mode)")
    model_prefix: tuple[str, ...] = ()
    precision: tuple[str, ...] = ()
    framework: tuple[str, ...] = ()
    runner_type: tuple[str, ...] = ()
    seq_lens: tuple[SeqLenName, ...] = ()
    min_conc: int | None = Field(default=None, gt=0)
    max_conc: int | None = Field(default=None, gt=0)
    max_tp: int | None = Field(default=None, gt=0)
    max_ep: int | None = Field(default=None, gt=0)
    single_node: bool = False
    multi_node: bool = False  # neither flag = both, as upstream's full-sweep
    step_size: int = Field(default=2, gt=1)

    @field_validator("config_keys", "model_prefix", "precision", "framework", "runner_type", "seq_lens", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _conc_order(self) -> PlanFilters:
        if self.min_conc is not None and self.max_conc is not None and self.min_conc > self.max_conc:
            raise ValueError(f"min_conc ({self.min_conc}) must be <= max_conc ({self.max_conc})")
        return self


class PlanInputError(InfersweepError, ValueError):
    """Config data the planner cannot expand (e.g. a dram-offloading agentic point without runner hardware)."""

    kind = "config_error"
    transient = False


@dataclass
class Unsupported:
    """Work the planner does not run yet, counted in InferenceX matrix rows (and entries).

    `agentic_rows` counts every agentic-coding row: the single-node ones are also planned in full
    (`Expansion.agentic`), the multinode ones only counted.
    """

    multinode_rows: int = 0
    multinode_keys: int = 0
    agentic_rows: int = 0
    agentic_keys: int = 0
    excluded_multinode_keys: int = 0  # left out on purpose by single_node=True, as the reference does


@dataclass
class Expansion:
    jobs: list[Job]
    unsupported: Unsupported
    agentic: list[AgenticJob] = field(default_factory=list)
    multinode: list[MultinodeJob] = field(default_factory=list)  # planned, not executed (fixed and agentic)
    keys: list[str] = field(default_factory=list)  # config keys in expansion order (file or --config-keys order)


def expand_jobs(sweep_or_entries: Any, filters: PlanFilters | None = None) -> list[Job]:
    """Single-node fixed-seq-len jobs for a `Sweep` or a {config key: MasterEntry} mapping, eval-marked."""
    return expand(sweep_or_entries, filters).jobs


def expand(sweep_or_entries: Any, filters: PlanFilters | None = None) -> Expansion:
    """Like `expand_jobs`, plus the counts of multinode/agentic work that is not supported yet."""
    f = filters or PlanFilters()
    entries: Mapping[str, MasterEntry] = getattr(sweep_or_entries, "entries", sweep_or_entries)
    known_labels: set[str] = set()
    if hasattr(sweep_or_entries, "runner_labels"):
        known_labels = set(sweep_or_entries.runner_labels())
    known_labels |= {e.runner for e in entries.values()}
    if f.runner_type:
        bad = sorted(set(f.runner_type) - known_labels)
        if bad:
            raise PlanFilterError(f"invalid runner type(s): {', '.join(bad)}; valid: {', '.join(sorted(known_labels))}")
    keys = resolve_config_keys(f.config_keys, list(entries)) if f.config_keys else list(entries)
    seq_filter = {SEQ_LENS[s] for s in f.seq_lens}
    runners = getattr(sweep_or_entries, "runners", None)
    hardware: Mapping[str, RunnerHardware] = runners.hardware if runners is not None else {}
    jobs: list[Job] = []
    agentic: list[AgenticJob] = []
    multinode: list[MultinodeJob] = []
    skipped = Unsupported()
    want_single = f.single_node or not f.multi_node
    want_multi = f.multi_node or not f.single_node
    for key in keys:
        entry = entries[key]
        if f.model_prefix and not any(key.startswith(p) for p in f.model_prefix):
            continue
        if f.precision and entry.precision not in f.precision:
            continue
        if f.framework and entry.framework not in f.framework:
            continue
        if f.runner_type and entry.runner not in f.runner_type:
            continue
        if entry.multinode and not want_multi:
            skipped.excluded_multinode_keys += 1
            continue
        if not entry.multinode and not want_single:
            continue
        if entry.multinode:
            fixed = list(_multinode_jobs(key, entry, seq_filter, f))
            mn_agentic = list(_multinode_agentic_jobs(key, entry, hardware.get(entry.runner), f))
            multinode.extend(fixed + mn_agentic)
            skipped.multinode_rows += len(fixed)
            skipped.multinode_keys += bool(fixed)
            n_agentic = len(mn_agentic)
        else:
            jobs.extend(_single_node_jobs(key, entry, seq_filter, f))
            planned = list(_agentic_jobs(key, entry, hardware.get(entry.runner), f))
            agentic.extend(planned)
            n_agentic = len(planned)
        skipped.agentic_rows += n_agentic
        skipped.agentic_keys += bool(n_agentic)
    eval_for = getattr(sweep_or_entries, "eval_for", None)
    return Expansion(jobs=apply_eval_policy(mark_eval(jobs), eval_for), unsupported=skipped, agentic=agentic,
                     multinode=_multinode_eval_policy(mark_multinode_eval(multinode), eval_for), keys=keys)


def apply_eval_policy(jobs: list[Job], eval_for: Callable[[str], Any] | None) -> list[Job]:
    """Each sweep file's `eval:` settings on top of the reference marking (`eval_for(config_key)`): eval off,
    or `select: max-conc` = one eval per serve group at its highest conc."""
    if eval_for is None:
        return jobs
    top: dict[tuple[Any, ...], int] = {}
    for job in jobs:
        key = server_tuple(job)
        top[key] = max(top.get(key, 0), job.conc)
    out = []
    for job in jobs:
        settings = eval_for(job.config_key)
        if not settings.enabled:
            run_eval = False
        elif settings.select == "max-conc":
            run_eval = job.conc == top[server_tuple(job)]
        else:
            run_eval = job.run_eval
        out.append(job if run_eval == job.run_eval else job.model_copy(update={"run_eval": run_eval}))
    return out


def resolve_config_keys(patterns: Sequence[str], available: Sequence[str]) -> list[str]:
    """The reference `expand_config_keys`: globs expand in file order, plain keys must exist, order kept."""
    seen: dict[str, None] = {}
    for pattern in patterns:
        if "*" in pattern or "?" in pattern:
            matches = fnmatch.filter(available, pattern)
            if not matches:
                raise PlanFilterError(f"pattern '{pattern}' matched no config keys")
            seen.update(dict.fromkeys(matches))
        elif pattern in available:
            seen.setdefault(pattern, None)
        else:
            raise PlanFilterError(f"config key not found: {pattern}")
    return list(seen)


def _single_node_jobs(key: str, entry: MasterEntry, seq_filter: set[tuple[int, int]], f: PlanFilters) -> Iterable[Job]:
    for cfg in entry.scenarios.fixed_seq_len:
        if seq_filter and (cfg.isl, cfg.osl) not in seq_filter:
            continue
        for point in cfg.search_space:
            assert point.tp is not None  # guaranteed by entry_problems for single-node entries
            if f.max_tp is not None and point.tp > f.max_tp:
                continue
            ep = point.ep
            if f.max_ep is not None and ep is not None and ep > f.max_ep:
                ep = f.max_ep
            concs = _filtered_concs(point, f)
            for conc in concs:
                yield Job(
                    config_key=key, image=entry.image, model=entry.model, model_prefix=entry.model_prefix,
                    precision=entry.precision, framework=entry.framework, runner=entry.runner,
                    isl=cfg.isl, osl=cfg.osl, tp=point.tp, ep=ep if ep is not None else 1,
                    dp_attn=bool(point.dp_attn), pp=point.pp, dcp_size=point.dcp_size, pcp_size=point.pcp_size,
                    spec_decoding=point.spec_decoding, conc=conc, max_model_len=cfg.isl + cfg.osl + 256,
                    exp_name=f"{entry.model_prefix}_{seq_len_name(cfg.isl, cfg.osl)}", disagg=entry.disagg,
                    **_components(entry, point),
                )


def _components(entry: MasterEntry, point: FixedSeqLenPoint) -> dict[str, Any]:
    """Upstream's `component_metadata`: router / kv-p2p-transfer from the point, else from the entry."""
    return {"router": point.router or entry.router,
            "kv_p2p_transfer": point.kv_p2p_transfer or entry.kv_p2p_transfer}


#: Upstream caps the node DRAM an agentic server may offload into at 3 TB (decimal), in MiB.
MAX_AGENTIC_CPU_DRAM_MIB = 2_861_022


def agentic_dram_offload_gb(cfg: AgenticCoding, point: AgenticPoint, runner: str,
                            hardware: RunnerHardware | None) -> int:
    """The DRAM offload budget (GB) of one agentic server node, exactly as upstream computes it:
    min(node DRAM, 3 TB) x dram-utilization x (GPUs used / GPUs per node), in decimal GB, truncated."""
    if point.kv_offloading != "dram":
        return 0
    if hardware is None:
        raise PlanInputError(f"runner '{runner}' has no hardware facts; kv-offloading: dram needs "
                             "available-cpu-dram-mib and gpus-per-node under runners.yaml hardware:")
    assert cfg.dram_utilization is not None  # entry_problems guarantees it
    try:
        gpus = hardware.node_gpus(point)
    except NodeFitError as exc:
        raise PlanInputError(f"{exc} of runner '{runner}'") from exc
    available = min(hardware.available_cpu_dram_mib, MAX_AGENTIC_CPU_DRAM_MIB)
    # Decimal, as upstream: binary floats would round some budgets one GB down.
    budget = Decimal(available) * 1024 * 1024 * Decimal(str(cfg.dram_utilization)) * gpus / hardware.gpus_per_node
    return int(budget / 1_000_000_000)


def _agentic_jobs(key: str, entry: MasterEntry, hardware: RunnerHardware | None,
                  f: PlanFilters) -> Iterable[AgenticJob]:
    """Single-node agentic-coding rows in the generator's order: config → point → conc."""
    for cfg in entry.scenarios.agentic_coding:
        for point in cfg.search_space:
            assert point.tp is not None  # single-node entry: entry_problems guarantees tp
            legacy = point.legacy
            total = 0 if legacy else agentic_dram_offload_gb(cfg, point, entry.runner, hardware)
            duration = cfg.duration or (LEGACY_AGENTIC_DURATION_S if legacy else DEFAULT_AGENTIC_DURATION_S)
            backend = point.kv_offload_backend
            kv = point.kv_offloading or "none"
            suffix = "kvnone" if kv == "none" else f"kv{kv}-{backend.name if backend else ''}"
            for conc in _agentic_concs(point, f):
                if legacy:
                    exp_name = f"{entry.model_prefix}_tp{point.tp}_conc{conc}_offload{point.offloading}"
                else:
                    exp_name = f"{entry.model_prefix}_tp{point.tp}_conc{conc}_{suffix}" + (
                        f"_spec-{point.spec_decoding}" if point.spec_decoding != "none" else "")
                yield AgenticJob(
                    config_key=key, image=entry.image, model=entry.model, model_prefix=entry.model_prefix,
                    precision=entry.precision, framework=entry.framework, runner=entry.runner, tp=point.tp,
                    pp=point.pp, dcp_size=point.dcp_size, pcp_size=point.pcp_size,
                    ep=point.ep if point.ep is not None else 1, dp_attn=bool(point.dp_attn),
                    spec_decoding=point.spec_decoding, conc=conc, kv_offloading=kv, kv_offload_backend=backend,
                    offloading=point.offloading, total_cpu_dram_gb=total, duration=duration, exp_name=exp_name,
                    router=point.router or entry.router, legacy=legacy,
                )


def _filtered_concs(point: Any, f: PlanFilters) -> list[int]:
    """Single-node conc filtering, range and list variants exactly as the reference applies them."""
    if point.conc_list is not None:
        values = list(point.conc_list)
        if f.min_conc is not None:
            values = [c for c in values if c >= f.min_conc]
            if not values:
                return []
        if f.max_conc is not None:
            values = [c for c in values if c <= f.max_conc] or [f.max_conc]
        return values
    start, end = point.conc_start, point.conc_end
    if f.min_conc is not None:
        if end < f.min_conc:
            return []
        start = max(start, f.min_conc)
    if f.max_conc is not None:
        if start > f.max_conc:
            start = end = f.max_conc
        else:
            end = min(end, f.max_conc)
    return geometric(start, end, step=f.step_size)


def _multinode_jobs(key: str, entry: MasterEntry, seq_filter: set[tuple[int, int]],
                    f: PlanFilters) -> Iterable[MultinodeJob]:
    """Multinode fixed-seq-len rows: one per point, all its concurrencies on one allocation. min-conc drops
    values (a point left with none is skipped); max-conc drops values, or runs at max-conc if none is left."""
    for cfg in entry.scenarios.fixed_seq_len:
        if seq_filter and (cfg.isl, cfg.osl) not in seq_filter:
            continue
        for point in cfg.search_space:
            assert point.prefill is not None and point.decode is not None  # entry_problems guarantees both
            values = concurrencies(point, step=f.step_size)
            if f.min_conc is not None:
                values = [c for c in values if c >= f.min_conc]
                if not values:
                    continue
            if f.max_conc is not None:
                values = [c for c in values if c <= f.max_conc] or [f.max_conc]
            yield MultinodeJob(
                config_key=key, image=entry.image, model=entry.model, model_prefix=entry.model_prefix,
                precision=entry.precision, framework=entry.framework, runner=entry.runner, isl=cfg.isl, osl=cfg.osl,
                spec_decoding=point.spec_decoding, prefill=point.prefill, decode=point.decode, conc=tuple(values),
                max_model_len=cfg.isl + cfg.osl + 256, exp_name=f"{entry.model_prefix}_{seq_len_name(cfg.isl, cfg.osl)}",
                disagg=entry.disagg, **_components(entry, point),
            )


def _pool_tag(worker: WorkerConfig, role: str) -> str:
    tag = f"{role}{worker.num_worker}x{worker.tp}"
    return tag + (f"ep{worker.ep}" if worker.ep != 1 else "") + ("dpa" if worker.dp_attn else "")


def _multinode_agentic_jobs(key: str, entry: MasterEntry, hardware: RunnerHardware | None,
                            f: PlanFilters) -> Iterable[MultinodeJob]:
    """Multinode agentic rows: one allocation per concurrency (upstream's chunk size is 1)."""
    for cfg in entry.scenarios.agentic_coding:
        for point in cfg.search_space:
            assert point.prefill is not None and point.decode is not None
            legacy = cfg.duration is not None or point.legacy
            total = 0 if legacy else agentic_dram_offload_gb(cfg, point, entry.runner, hardware)
            backend, kv = point.kv_offload_backend, point.kv_offloading or "none"
            suffix = "" if kv == "none" else f"_kv{kv}-{backend.name if backend else ''}"
            for conc in _agentic_concs(point, f):
                if legacy:
                    name = (f"{entry.model_prefix}_p{point.prefill.num_worker}x{point.prefill.tp}"
                            f"_d{point.decode.num_worker}x{point.decode.tp}_conc{conc}")
                else:
                    name = (f"{entry.model_prefix}_{_pool_tag(point.prefill, 'p')}_{_pool_tag(point.decode, 'd')}"
                            f"_conc{conc}{suffix}")
                yield MultinodeJob(
                    config_key=key, image=entry.image, model=entry.model, model_prefix=entry.model_prefix,
                    precision=entry.precision, framework=entry.framework, runner=entry.runner,
                    spec_decoding=point.spec_decoding, prefill=point.prefill, decode=point.decode, conc=(conc,),
                    exp_name=name, disagg=entry.disagg, scenario_type=AGENTIC, kv_offloading=kv,
                    kv_offload_backend=backend, total_cpu_dram_gb=total,
                    duration=cfg.duration or (LEGACY_AGENTIC_DURATION_S if legacy else DEFAULT_AGENTIC_DURATION_S),
                    legacy=legacy, **_components(entry, point),
                )


#: Row keys that do not tell two multinode topologies apart (upstream's `_multinode_parallelism_key`).
_NOT_TOPOLOGY = frozenset({"conc", "run-eval", "eval-only", "eval-conc", "eval-all-concs", "exp-name"})


def mark_multinode_eval(rows: Sequence[MultinodeJob]) -> list[MultinodeJob]:
    """Upstream's multinode eval marking: among 8k1k fixed-seq-len rows of one topology, the row with the
    highest concurrency >= 16 is evaluated at that concurrency (`eval-conc`)."""
    best: dict[str, tuple[int, int]] = {}
    for i, row in enumerate(rows):
        if row.scenario_type is not None or (row.isl, row.osl) != EVAL_SEQ_LEN:
            continue
        eligible = sorted(c for c in row.conc if c >= MIN_EVAL_CONC)
        if not eligible:
            continue
        data = row.to_inferencex()
        topology = json.dumps({k: v for k, v in data.items() if k not in _NOT_TOPOLOGY}, sort_keys=True)
        if topology not in best or eligible[-1] > best[topology][1]:
            best[topology] = (i, eligible[-1])
    chosen = dict(best.values())
    return [row.model_copy(update={"run_eval": True, "eval_conc": chosen[i]}) if i in chosen else row
            for i, row in enumerate(rows)]


def _multinode_eval_policy(rows: list[MultinodeJob], eval_for: Callable[[str], Any] | None) -> list[MultinodeJob]:
    """A sweep file with evals off turns the multinode marks off too; `select: max-conc` evaluates every
    fixed-seq-len row at its highest concurrency (as it does single-node groups)."""
    if eval_for is None:
        return rows
    out = []
    for r in rows:
        settings = eval_for(r.config_key)
        if not settings.enabled:
            r = r.model_copy(update={"run_eval": False, "eval_conc": None}) if r.run_eval else r
        elif settings.select == "max-conc" and r.scenario_type is None:
            r = r.model_copy(update={"run_eval": True, "eval_conc": max(r.conc)})
        out.append(r)
    return out


def _agentic_concs(point: AgenticPoint, f: PlanFilters) -> list[int]:
    """An agentic point's concurrencies: min/max-conc only drop values (no clamping, unlike fixed-seq-len)."""
    values = concurrencies(point, step=f.step_size)
    if f.min_conc is not None:
        values = [c for c in values if c >= f.min_conc]
    if f.max_conc is not None:
        values = [c for c in values if c <= f.max_conc]
    return values




def mark_eval(jobs: Sequence[Job]) -> list[Job]:
    """The reference `mark_eval_entries` for single-node rows.

    Only isl 8192 / osl 1024 qualifies. Rows are grouped by (model, runner, framework, precision, isl,
    osl, spec-decoding, dp-attn), ignoring conc < MIN_EVAL_CONC; within a group every row (all TPs) at
    the highest conc and at the upper median `concs[len // 2]` of the sorted distinct concs is marked.
    """
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, job in enumerate(jobs):
        if (job.isl, job.osl) != EVAL_SEQ_LEN or job.conc < MIN_EVAL_CONC:
            continue
        key = (job.model, job.runner, job.framework, job.precision, job.isl, job.osl, job.spec_decoding, job.dp_attn)
        groups[key].append(i)
    marked: set[int] = set()
    for idx in groups.values():
        concs = sorted({jobs[i].conc for i in idx})
        targets = {concs[-1], concs[len(concs) // 2]}
        marked.update(i for i in idx if jobs[i].conc in targets)
    return [job.model_copy(update={"run_eval": True}) if i in marked else
            (job.model_copy(update={"run_eval": False}) if job.run_eval else job) for i, job in enumerate(jobs)]
