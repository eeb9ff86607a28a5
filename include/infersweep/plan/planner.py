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

Multinode and agentic entries are validated but not run yet: they are counted (in reference rows) in
`Unsupported`, never silently dropped.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from infersweep.config.master import (
    SEQ_LENS,
    AgenticCoding,
    MasterEntry,
    concurrencies,
    geometric,
    seq_len_name,
)
from infersweep.plan.groups import server_tuple
from infersweep.plan.models import Job

MIN_EVAL_CONC = 16
EVAL_SEQ_LEN = SEQ_LENS["8k1k"]
SeqLenName = Literal["1k1k", "8k1k"]


class PlanFilterError(ValueError):
    """A filter that cannot apply to the loaded configs (unknown runner label, glob matching nothing)."""


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


@dataclass
class Unsupported:
    """Work the planner does not run yet, counted in InferenceX matrix rows (and entries)."""

    multinode_rows: int = 0
    multinode_keys: int = 0
    agentic_rows: int = 0
    agentic_keys: int = 0
    excluded_multinode_keys: int = 0  # left out on purpose by single_node=True, as the reference does


@dataclass
class Expansion:
    jobs: list[Job]
    unsupported: Unsupported


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
    jobs: list[Job] = []
    skipped = Unsupported()
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
        if entry.multinode and f.single_node:
            skipped.excluded_multinode_keys += 1
            continue
        if entry.multinode:
            rows = _multinode_rows(entry, seq_filter, f)
            skipped.multinode_rows += rows
            skipped.multinode_keys += bool(rows)
        else:
            jobs.extend(_single_node_jobs(key, entry, seq_filter, f))
        agentic = sum(_agentic_rows(cfg, f) for cfg in entry.scenarios.agentic_coding)
        skipped.agentic_rows += agentic
        skipped.agentic_keys += bool(agentic)
    eval_for = getattr(sweep_or_entries, "eval_for", None)
    return Expansion(jobs=apply_eval_policy(mark_eval(jobs), eval_for), unsupported=skipped)


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


def _multinode_rows(entry: MasterEntry, seq_filter: set[tuple[int, int]], f: PlanFilters) -> int:
    """Reference rows for a multinode entry: one per point (all concs run on one engine)."""
    rows = 0
    for cfg in entry.scenarios.fixed_seq_len:
        if seq_filter and (cfg.isl, cfg.osl) not in seq_filter:
            continue
        for point in cfg.search_space:
            values = concurrencies(point, step=f.step_size)
            if f.min_conc is not None:
                values = [c for c in values if c >= f.min_conc]
                if not values:
                    continue
            rows += 1
    return rows


def _agentic_rows(cfg: AgenticCoding, f: PlanFilters) -> int:
    """Reference rows for an agentic-coding config: one per (point, conc)."""
    rows = 0
    for point in cfg.search_space:
        values = concurrencies(point, step=f.step_size)
        if f.min_conc is not None:
            values = [c for c in values if c >= f.min_conc]
        if f.max_conc is not None:
            values = [c for c in values if c <= f.max_conc]
        rows += len(values)
    return rows


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
