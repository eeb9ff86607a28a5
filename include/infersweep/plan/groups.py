"""Serve groups: jobs that differ only in concurrency share one server boot.

InferenceX boots a server per job; the MiniMax-M3 Hopper keys reload a 444 GB checkpoint 45 times. A
serve group's server is started once and benchmarked at every concurrency of the group, ascending.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from infersweep.config.runners import Runners
from infersweep.plan.models import Job, MultinodeJob, ServeGroup, WorkerPool

#: Job fields that do not change the server: the client's concurrency and whether that point is evaluated.
_PER_POINT_FIELDS = frozenset({"conc", "run_eval"})
_FINGERPRINT_VERSION = "infersweep.serve-group.v1"
ID_LENGTH = 12


#: Job fields that define the server (the recipe inputs), in model order.
RECIPE_FIELDS: tuple[str, ...] = tuple(f for f in Job.model_fields if f not in _PER_POINT_FIELDS)
#: Fields added after v1 ids were issued: left out of the fingerprint while unset, so every existing
#: group keeps its id (and its stored results stay reusable) and only groups that set them get new ids.
_UNSET_NOT_FINGERPRINTED = frozenset({"router", "kv_p2p_transfer"})


def group_key(job: Job) -> dict[str, Any]:
    """The canonical recipe inputs of a job: every field except conc and run-eval (nested models as data)."""
    return {f: (v.model_dump(mode="json") if isinstance(v := getattr(job, f), BaseModel) else v)
            for f in RECIPE_FIELDS}


def server_tuple(job: Job) -> tuple[Any, ...]:
    """`group_key` as a hashable tuple (cheap; used to bucket jobs before fingerprinting)."""
    return tuple(getattr(job, f) for f in RECIPE_FIELDS)


def group_fingerprint(recipe_inputs: dict[str, Any]) -> str:
    """Short, stable id: sha256 of the canonical JSON (sorted keys), so file order never changes it."""
    inputs = {k: v for k, v in recipe_inputs.items() if not (v is None and k in _UNSET_NOT_FINGERPRINTED)}
    payload = json.dumps({"v": _FINGERPRINT_VERSION, **inputs}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:ID_LENGTH]


def group_jobs(jobs: Sequence[Job]) -> list[ServeGroup]:
    """Group jobs that differ only in conc; groups keep first-appearance order, concs ascend."""
    buckets: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        buckets.setdefault(server_tuple(job), []).append(job)
    groups = []
    for members in buckets.values():
        inputs = group_key(members[0])
        groups.append(ServeGroup(
            id=group_fingerprint(inputs), **inputs,
            concs=tuple(sorted({j.conc for j in members})),
            eval_concs=tuple(sorted({j.conc for j in members if j.run_eval})),
        ))
    return groups


def jobs_by_group(jobs: Sequence[Job]) -> dict[str, list[Job]]:
    """Group id → its jobs in plan order (for runners that need the per-point rows)."""
    buckets: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        buckets.setdefault(server_tuple(job), []).append(job)
    return {group_fingerprint(group_key(m[0])): m for m in buckets.values()}


#: GPUs per node by SKU where runners.yaml has no `hardware:` entry for the label (a GB200/GB300 NVL72 compute
#: tray holds 4). The inventory's `gpus` is what a lease finds on the node.
_SKU_GPUS_PER_NODE = {"gb200": 4, "gb300": 4}
#: Multinode row fields that do not change the topology (the client's concurrencies and eval marks).
_MULTINODE_PER_POINT = frozenset({"conc", "run_eval", "eval_conc"})


def _where(job: MultinodeJob) -> str:
    return f"multinode row {job.config_key} ({job.framework}, isl={job.isl} osl={job.osl}, conc={list(job.conc)})"


def gpus_per_node(runner: str, runners: Runners | None = None) -> int:
    """GPUs on one node of `runner`: runners.yaml `hardware:` for the label, else for the `cluster:` labels of
    the same SKU (when they agree), else 4 for GB200/GB300 trays and 8 otherwise."""
    from infersweep.recipes.hardware import gpu_for_runner

    hardware = runners.hardware if runners is not None else {}
    if runner in hardware:
        return hardware[runner].gpus_per_node
    sku = gpu_for_runner(runner)
    if sku is None:
        return 8
    same = {hw.gpus_per_node for label, hw in hardware.items()
            if (g := gpu_for_runner(label)) is not None and g.name == sku.name}
    if len(same) == 1:
        return same.pop()
    return _SKU_GPUS_PER_NODE.get(sku.name, 8)


def _runner_for_hardware(job: MultinodeJob, hardware: str | None, runners: Runners | None) -> str:
    """The runner label a pool leases: the row's, unless the pool names another GPU SKU (heterogeneous
    disaggregation), then that SKU's label (exact, else the one runners.yaml label of that SKU)."""
    from infersweep.recipes.errors import RecipeError
    from infersweep.recipes.hardware import gpu_for_runner

    if hardware is None:
        return job.runner
    own = gpu_for_runner(job.runner)
    if own is not None and own.name == hardware.lower():
        return job.runner
    labels = list(runners.labels) if runners is not None else []
    if hardware in labels or runners is None:
        return hardware
    matches = [label for label in labels if (g := gpu_for_runner(label)) is not None and g.name == hardware.lower()]
    if len(matches) == 1:
        return matches[0]
    raise RecipeError(f"{_where(job)}: pool hardware {hardware!r} maps to no single runner label "
                      f"(candidates: {matches or 'none'}); add a runners.yaml label for it")


def pools_of(job: MultinodeJob, runners: Runners | None = None) -> tuple[WorkerPool, ...]:
    """A multinode row's worker pools: prefill then decode. An empty decode pool (num-worker 0) makes the
    prefill pool the aggregated one (InferenceX's aggregated multinode rows). A pool's `hardware` names the
    runner label its nodes come from (heterogeneous disaggregation); else the row's runner."""
    from infersweep.recipes.errors import RecipeError

    out: list[WorkerPool] = []
    aggregated = job.decode.num_worker == 0
    for role, worker in (("prefill", job.prefill), ("decode", job.decode)):
        if worker.num_worker == 0:
            continue
        runner = _runner_for_hardware(job, worker.hardware, runners)
        out.append(WorkerPool(
            role="aggregated" if aggregated else role, num_worker=worker.num_worker, tp=worker.tp, pp=worker.pp,
            ep=worker.ep, dp_attn=worker.dp_attn, dcp_size=worker.dcp_size, pcp_size=worker.pcp_size,
            runner=runner, hardware=worker.hardware, gpus_per_node=gpus_per_node(runner, runners),
            additional_settings=worker.additional_settings))
    if not out:
        raise RecipeError(f"{_where(job)}: both pools have num-worker 0")
    return tuple(out)


def multinode_groups(jobs: Sequence[MultinodeJob], runners: Runners | None = None) -> list[ServeGroup]:
    """Serve groups of multinode fixed-seq-len rows: one per row (upstream runs all of a row's concurrencies
    on one allocation, and so do we; rows that differ only in their concurrencies share one group, as
    single-node jobs do). Top-level tp/ep/dp-attn/pp/dcp/pcp are the decode (or aggregated) pool's, the one
    that sets interactivity; `pools` holds both. Agentic rows are not grouped here."""
    groups: dict[str, ServeGroup] = {}
    for job in jobs:
        if job.scenario_type is not None or job.isl is None or job.osl is None:
            continue
        pools = pools_of(job, runners)
        main = pools[-1]
        inputs = {k: v for k, v in job.model_dump(mode="json").items() if k not in _MULTINODE_PER_POINT}
        fingerprint = group_fingerprint({"kind": "multinode", **inputs})
        evals = (job.eval_conc,) if job.run_eval and job.eval_conc is not None else ()
        if job.run_eval and job.eval_conc is None:
            evals = (max(job.conc),)
        if fingerprint in groups:
            seen = groups[fingerprint]
            groups[fingerprint] = seen.model_copy(update={
                "concs": tuple(sorted({*seen.concs, *job.conc})),
                "eval_concs": tuple(sorted({*seen.eval_concs, *evals}))})
            continue
        groups[fingerprint] = (ServeGroup(
            id=fingerprint, config_key=job.config_key, image=job.image, model=job.model,
            model_prefix=job.model_prefix, precision=job.precision, framework=job.framework, runner=job.runner,
            isl=job.isl, osl=job.osl, tp=main.tp, ep=main.ep, dp_attn=main.dp_attn, pp=main.pp,
            dcp_size=main.dcp_size, pcp_size=main.pcp_size, spec_decoding=job.spec_decoding,
            max_model_len=job.max_model_len or job.isl + job.osl + 256, exp_name=job.exp_name, disagg=job.disagg,
            router=job.router, kv_p2p_transfer=job.kv_p2p_transfer,
            concs=tuple(sorted(set(job.conc))), eval_concs=evals, pools=pools,
        ))
    return list(groups.values())


def multinode_job(group: ServeGroup) -> MultinodeJob:
    """The multinode row a multinode group stands for (all its concurrencies), for recipe builders that read
    InferenceX's row shape: prefill/decode pools as the config wrote them (an aggregated row keeps an empty
    decode pool, num-worker 0)."""
    from infersweep.config.master import WorkerConfig

    def worker(pool: WorkerPool | None) -> WorkerConfig:
        if pool is None:
            return WorkerConfig.model_validate({"num-worker": 0, "tp": 1, "ep": 1, "dp-attn": False})
        data: dict[str, Any] = {"num-worker": pool.num_worker, "tp": pool.tp, "ep": pool.ep, "dp-attn": pool.dp_attn,
                                "pp": pool.pp, "dcp-size": pool.dcp_size, "pcp-size": pool.pcp_size}
        if pool.hardware is not None:
            data["hardware"] = pool.hardware
        if pool.additional_settings:
            data["additional-settings"] = list(pool.additional_settings)
        return WorkerConfig.model_validate(data)

    if not group.pools:
        raise ValueError(f"serve group {group.id} is single-node; it has no multinode row")
    by_role = {p.role: p for p in group.pools}
    prefill = by_role.get("prefill") or by_role.get("aggregated")
    return MultinodeJob(
        config_key=group.config_key, image=group.image, model=group.model, model_prefix=group.model_prefix,
        precision=group.precision, framework=group.framework, runner=group.runner, isl=group.isl, osl=group.osl,
        spec_decoding=group.spec_decoding, prefill=worker(prefill), decode=worker(by_role.get("decode")),
        conc=group.concs, max_model_len=group.max_model_len, exp_name=group.exp_name, disagg=group.disagg,
        run_eval=bool(group.eval_concs), eval_conc=max(group.eval_concs) if group.eval_concs else None,
        router=group.router, kv_p2p_transfer=group.kv_p2p_transfer,
    )
