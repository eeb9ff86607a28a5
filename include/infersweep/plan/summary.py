"""A whole plan: jobs, serve groups, their memory verdicts, and the counts people ask for first."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from infersweep.plan.groups import (
    group_fingerprint,
    group_jobs,
    group_key,
    jobs_by_group,
    multinode_groups,
    server_tuple,
)
from infersweep.plan.models import AgenticJob, Job, MultinodeJob, ServeGroup
from infersweep.plan.planner import PlanFilters, Unsupported, expand

log = logging.getLogger(__name__)

#: Memory verdict that `prune` drops.
CANNOT_FIT = "cannot-fit"


@dataclass(frozen=True)
class PlanSummary:
    """Counts for humans and dashboards. `boots_saved` = jobs − groups (server starts avoided)."""

    jobs: int
    eval_jobs: int
    groups: int
    config_keys: int
    unsupported: Unsupported
    pruned_groups: int = 0
    pruned_jobs: int = 0
    agentic_jobs: int = 0
    agentic_keys: int = 0
    multinode_jobs: int = 0  # fixed-seq-len multinode rows
    multinode_groups: int = 0  # their serve groups (rows that differ only in conc share one)
    multinode_nodes: int = 0  # nodes those groups lease, summed
    multinode_agentic_jobs: int = 0
    multinode_keys: int = 0

    @property
    def boots_saved(self) -> int:
        return self.jobs - self.groups

    def to_json(self) -> dict[str, Any]:
        u = self.unsupported
        return {
            "jobs": self.jobs, "eval-jobs": self.eval_jobs, "groups": self.groups,
            "boots-saved": self.boots_saved, "config-keys": self.config_keys,
            "pruned-groups": self.pruned_groups, "pruned-jobs": self.pruned_jobs,
            "not-supported-yet": {
                "multinode": {"jobs": u.multinode_rows, "config-keys": u.multinode_keys},
                "agentic": {"jobs": u.agentic_rows, "config-keys": u.agentic_keys},
            },
            "planned-not-executed": {
                "agentic-coding": {"jobs": self.agentic_jobs, "config-keys": self.agentic_keys},
                "multinode": {"jobs": self.multinode_jobs, "agentic-coding-jobs": self.multinode_agentic_jobs,
                              "config-keys": self.multinode_keys},
            },
            "excluded-multinode-config-keys": u.excluded_multinode_keys,
        }

    def not_executed_lines(self) -> list[str]:
        """`agentic-coding: planned, not executed: 390 jobs (28 config keys)` and the multinode line."""
        def keys(n: int) -> str:
            return f"{n} config key{'' if n == 1 else 's'}"

        lines = []
        if self.agentic_jobs:
            lines.append(f"agentic-coding: planned, not executed: {self.agentic_jobs:,} jobs ({keys(self.agentic_keys)})")
        if self.multinode_jobs:
            lines.append(f"multinode: {self.multinode_jobs:,} fixed-seq-len jobs in {self.multinode_groups:,} serve "
                         f"groups over {self.multinode_nodes:,} node leases ({keys(self.multinode_keys)})")
        if self.multinode_agentic_jobs:
            lines.append(f"multinode agentic-coding: planned, not executed: {self.multinode_agentic_jobs:,} jobs")
        return lines


@dataclass
class Plan:
    jobs: list[Job]
    groups: list[ServeGroup]
    summary: PlanSummary
    memory: dict[str, Any] = field(default_factory=dict)  # group id → preflight result (has .to_json(), .verdict)
    pruned: list[tuple[ServeGroup, Any]] = field(default_factory=list)
    agentic: list[AgenticJob] = field(default_factory=list)  # planned, not executed yet
    multinode: list[MultinodeJob] = field(default_factory=list)  # the generator's multinode rows
    multinode_groups: list[ServeGroup] = field(default_factory=list)  # their serve groups (fixed-seq-len)
    key_order: list[str] = field(default_factory=list)  # config keys in expansion order


#: `preflight(group, quirks, gpu_memory_gb=None)` from infersweep.recipes.preflight (recipes helper).
Preflight = Callable[..., Any]


def build_plan(sweep: Any, filters: PlanFilters | None = None, *, preflight: Preflight | None = None,
               prune: bool = False) -> Plan:
    """Expand, group, and (with `preflight`) estimate memory per group; `prune` drops cannot-fit groups."""
    expansion = expand(sweep, filters)
    jobs = expansion.jobs
    groups = group_jobs(jobs)
    mn_groups = multinode_groups(expansion.multinode, getattr(sweep, "runners", None))
    memory: dict[str, Any] = {}
    if preflight is not None:
        for group in groups:
            memory[group.id] = preflight(group, _quirks(sweep, group), gpu_memory_gb=_gpu_memory(sweep, group.runner))
    pruned: list[tuple[ServeGroup, Any]] = []
    if prune:
        if preflight is None:
            raise ValueError("prune needs a memory preflight")
        pruned = [(g, memory[g.id]) for g in groups if getattr(memory[g.id], "verdict", None) == CANNOT_FIT]
        gone = {g.id for g, _ in pruned}
        for group, verdict in pruned:
            log.info("pruned serve group %s (%s, %s): cannot fit in GPU memory: %s", group.id, group.name,
                        group.runner, _reason(verdict))
        groups = [g for g in groups if g.id not in gone]
        ids = {server_tuple(members[0]): gid for gid, members in jobs_by_group(jobs).items()}
        jobs = [j for j in jobs if ids[server_tuple(j)] not in gone]
    pruned_jobs = len(expansion.jobs) - len(jobs)
    summary = PlanSummary(
        jobs=len(jobs), eval_jobs=sum(j.run_eval for j in jobs), groups=len(groups),
        config_keys=len({j.config_key for j in jobs}), unsupported=expansion.unsupported,
        pruned_groups=len(pruned), pruned_jobs=pruned_jobs, agentic_jobs=len(expansion.agentic),
        agentic_keys=len({a.config_key for a in expansion.agentic}),
        multinode_jobs=sum(m.scenario_type is None for m in expansion.multinode),
        multinode_agentic_jobs=sum(m.scenario_type is not None for m in expansion.multinode),
        multinode_keys=len({m.config_key for m in expansion.multinode}),
        multinode_groups=len(mn_groups), multinode_nodes=sum(g.nodes for g in mn_groups),
    )
    return Plan(jobs=jobs, groups=groups, summary=summary, memory=memory, pruned=pruned, agentic=expansion.agentic,
                multinode=expansion.multinode, key_order=expansion.keys, multinode_groups=mn_groups)


def group_json(group: ServeGroup, memory: Any = None) -> dict[str, Any]:
    """The `--format groups` object of one group (keys are a contract: extend, never rename)."""
    return {
        "id": group.id, "name": group.name, "config-key": group.config_key, "image": group.image,
        "model": group.model, "model-prefix": group.model_prefix, "precision": group.precision,
        "framework": group.framework, "runner": group.runner, "isl": group.isl, "osl": group.osl,
        "tp": group.tp, "ep": group.ep, "dp-attn": group.dp_attn, "pp": group.pp, "dcp-size": group.dcp_size,
        "pcp-size": group.pcp_size, "spec-decoding": group.spec_decoding, "max-model-len": group.max_model_len,
        "exp-name": group.exp_name, "concs": list(group.concs), "eval-concs": list(group.eval_concs),
        "gpus": group.gpus, "memory": memory.to_json() if memory is not None else None,
        **({"multinode": True, "nodes": group.nodes, "disagg": group.disagg,
            "pools": [p.model_dump(mode="json") for p in group.pools],
            "router": group.router.model_dump(mode="json") if group.router else None,
            "kv-p2p-transfer": group.kv_p2p_transfer} if group.pools else {}),
    }


def job_json(job: AnyJob) -> dict[str, Any]:
    """Our full per-job row: the InferenceX row first, then config-key and (fixed-seq-len) the group id."""
    row = job.to_inferencex()
    row["config-key"] = job.config_key
    if isinstance(job, Job):
        row["group-id"] = group_fingerprint(group_key(job))
    elif isinstance(job, MultinodeJob) and job.scenario_type is None:
        row["group-id"] = multinode_groups([job])[0].id
    else:
        row["executed"] = False
    return row


AnyJob = Job | AgenticJob | MultinodeJob


def inferencex_rows(jobs: Sequence[Job], agentic: Sequence[AgenticJob] = (), key_order: Sequence[str] = (),
                    multinode: Sequence[MultinodeJob] = ()) -> list[dict[str, Any]]:
    """The generator's rows in its order: config key by key (`key_order`: file order, or the --config-keys
    order), its fixed-seq-len rows, then its agentic rows."""
    order = {key: i for i, key in enumerate(key_order)}
    rows: list[AnyJob] = [*jobs, *multinode, *agentic]
    for job in rows:
        order.setdefault(job.config_key, len(order))
    # A stable sort keeps each key's fixed rows (eval-marked order) ahead of its agentic rows.
    rows.sort(key=lambda j: (order[j.config_key], isinstance(j, AgenticJob) or getattr(j, "scenario_type", None)
                             is not None))
    return [j.to_inferencex() for j in rows]


def _quirks(sweep: Any, group: ServeGroup) -> Any:
    finder = getattr(sweep, "quirks_for", None)
    return finder(group.model_prefix, group.model) if finder else None


def _gpu_memory(sweep: Any, runner: str) -> float | None:
    """Smallest GPU memory among the label's inventory nodes (a group must fit on any of them)."""
    nodes = getattr(sweep, "inventory", {}).get(runner, [])
    return min((n.gpu_memory_gb for n in nodes), default=None)


def _reason(verdict: Any) -> str:
    data = verdict.to_json() if hasattr(verdict, "to_json") else verdict
    if isinstance(data, dict):
        for key in ("reason", "detail", "message"):
            if data.get(key):
                return str(data[key])
    return str(data)
