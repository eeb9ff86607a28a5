"""The point-choosing policies inside a sweep DAG: which concurrencies a group's benchmark step measures.

- `off` (default): the ladder InferenceX measures, every point (`repeats` still apply).
- `frontier`: `plan.adaptive`. Each group's benchmark step asks the policy for its next point, reading the
  frontier from everything this run has stored for the scope (the other groups run in parallel and add to
  it as they go), and from the priors (history of the topology, the simulator's roofline model). A group a
  prior shows dominated is skipped before its server starts (the `serve` task is skipped).
- `slo`: `plan.slo`. Bisection for the largest concurrency meeting the sweep file's targets.

Every decision lands in the store (`point_decisions`) with its reason, and in the task log. Skipped points
leave the group's planned count, so run summaries and the verdict count what was meant to be measured.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from infersweep.airflow.context import RunContext
from infersweep.airflow.payloads import WorkItem
from infersweep.bench.point import PointResult
from infersweep.config.adaptive import AdaptiveSettings, SloTargets
from infersweep.plan.adaptive import (
    AdaptiveOptions,
    Decision,
    Observation,
    Scope,
    Topology,
    close,
    group_skip,
)
from infersweep.plan.adaptive import next_for_topology as adaptive_next
from infersweep.plan.models import layout_of
from infersweep.plan.priors import history_prior, roofline_prior
from infersweep.plan.slo import SloSearch
from infersweep.store.api import ResultStore

log = logging.getLogger(__name__)

MeasureOne = Callable[[int], PointResult]


class GroupSkipped(Exception):
    """The policy skipped a whole group before its server started (the task turns it into a skip)."""


def mode_of(params: dict[str, Any], adaptive: AdaptiveSettings) -> str:
    """The run's policy: the `adaptive` trigger param, else the sweep file's `adaptive.mode`."""
    chosen = params.get("adaptive")
    return str(chosen) if chosen else adaptive.mode


def mode(work: WorkItem, params: dict[str, Any]) -> str:
    """The policy of a run's work item."""
    return mode_of(params, work.adaptive)


def slo_targets(adaptive: AdaptiveSettings, config_key: str) -> SloTargets:
    """The SLO search's targets, or the `config_error` naming the fix (a sweep file validates `mode: slo`
    itself; the `adaptive=slo` trigger param can ask for it on a file without targets)."""
    if adaptive.slo is None:
        from infersweep.faults.errors import ClassifiedError

        raise ClassifiedError("config_error", f"adaptive=slo needs SLO targets: add `adaptive: {{slo: {{p99-ttft-ms: "
                              f"2000, median-tpot-ms: 50}}}}` to the sweep file of {config_key}")
    return adaptive.slo


def repeats(work: WorkItem, params: dict[str, Any], conc: int) -> int:
    """How many times to measure `conc`: the `repeats` trigger param, else the sweep file's `repeats:`."""
    if params.get("repeats"):
        return int(params["repeats"])
    g = work.group
    return work.repeats.for_point(seq_len=g.seq_len, tp=g.tp, ep=g.ep, dp_attn=g.dp_attn, conc=conc)


def options(settings: AdaptiveSettings) -> AdaptiveOptions:
    """The policy's knobs from the sweep file."""
    return AdaptiveOptions(tolerance=settings.tolerance, noise=settings.noise, max_points=settings.max_points,
                           group_skip=settings.group_skip)


def _gpu_profile(work: WorkItem) -> str | None:
    from infersweep.recipes.hardware import gpu_for_runner

    for node in work.nodes:
        if node.gpu_profile:
            return node.gpu_profile
    spec = gpu_for_runner(work.group.runner)
    return spec.name if spec is not None else None


def build_scope(store: ResultStore, work: WorkItem, rc: RunContext) -> Scope:
    """The scope of `work`'s group (its config key and sequence length) as this run has stored it so far."""
    from infersweep.recipes.model import Recipe
    from infersweep.store.sweep_state import scope_groups, scope_points, topology_history

    settings = work.adaptive
    g = work.group
    store.flush()
    rows = [r for r in scope_groups(store.engine, dag_id=rc.dag_id, run_id=rc.run_id, config_key=g.config_key,
                                    isl=g.isl, osl=g.osl) if r["concs"]]
    points = scope_points(store.engine, dag_id=rc.dag_id, run_id=rc.run_id,
                          group_ids=[r["group_id"] for r in rows], isl=g.isl, osl=g.osl)
    history = (topology_history(store.engine, config_key=g.config_key, isl=g.isl, osl=g.osl,
                                exclude_dag_run=(rc.dag_id, rc.run_id), engine_name=work.engine)
               if "history" in settings.priors else {})
    gpu = _gpu_profile(work)
    topologies = []
    for row in rows:
        label = layout_of(row)
        measured = {}
        for p in points:
            if p["group_id"] != row["group_id"]:
                continue
            ok = p["status"] == "ok" and p["tput_per_gpu"] and p["median_intvty"]
            gpu_s = float(p["duration_s"] or 0.0) * float(p["gpus"] or 1)
            measured[p["conc"]] = (Observation(p["conc"], float(p["median_intvty"]), float(p["tput_per_gpu"]), gpu_s)
                                   if ok else Observation(p["conc"], 0.0, 0.0, gpu_s, ok=False))
        concs = tuple(int(c) for c in row["concs"])
        prior: dict[int, Observation] = {}
        source, margin = "", 0.0
        if label in history:
            prior, source, margin = history_prior(history[label]), "history", settings.prior_margin.history
        elif "roofline" in settings.priors and row["recipe"]:
            # The offline model costs seconds per concurrency at fleet sizes: other groups need it only where
            # they were measured (to calibrate it), this group everywhere.
            wanted = concs if row["group_id"] == g.id else tuple(sorted(c for c in measured if measured[c].ok))
            if wanted:
                prior = roofline_prior(Recipe.model_validate(row["recipe"]), gpu_profile=gpu,
                                       model_profile=work.sim.model_profile, isl=g.isl, osl=g.osl, concs=wanted,
                                       gpus=(row["tp"] or 1) * (row["pp"] or 1) * (row["pcp_size"] or 1))
            source, margin = "roofline", settings.prior_margin.roofline
        topologies.append(Topology(row["group_id"], label, concs, measured=measured, prior=prior,
                                   prior_source=source, prior_margin=margin, mode=settings.concurrencies))
    return Scope(topologies, options(settings))


def record(store: ResultStore, work: WorkItem, decision: Decision, *, policy: str, seq: int) -> None:
    """Store and log one decision."""
    g = work.group
    store.record_decision(group_id=g.id, isl=g.isl, osl=g.osl, conc=decision.conc, policy=policy,
                          action=decision.action, reason=decision.reason, seq=seq, detail=decision.to_json())
    what = "whole group" if decision.conc == 0 else f"conc {decision.conc}"
    log.info("%s %s %s: %s (%s)", policy, g.id, what, decision.action, decision.reason)


def skip_if_dominated(store: ResultStore, work: WorkItem, rc: RunContext) -> None:
    """Before a server boots: skip the whole group when a prior shows it cannot reach the frontier this run
    has measured (raises GroupSkipped after recording why, for the group and each of its points)."""
    if mode(work, rc.params) != "frontier" or not work.adaptive.group_skip:
        return
    from infersweep.store.sweep_state import scope_groups, scope_points

    g = work.group
    store.flush()
    ids = [r["group_id"] for r in scope_groups(store.engine, dag_id=rc.dag_id, run_id=rc.run_id,
                                               config_key=g.config_key, isl=g.isl, osl=g.osl)]
    if not any(p["status"] == "ok" for p in scope_points(store.engine, dag_id=rc.dag_id, run_id=rc.run_id,
                                                         group_ids=ids, isl=g.isl, osl=g.osl)):
        return  # nothing measured yet: no frontier to be dominated by (and no prior to compute on every poke)
    scope = build_scope(store, work, rc)
    topo = scope.topology(work.group.id)
    if topo.measured:
        return
    decision = group_skip(scope, topo)
    if decision is None:
        return
    record(store, work, decision, policy="adaptive", seq=0)
    scope.skipped_groups.add(topo.group_id)
    for i, d in enumerate(close(scope, only=topo.group_id), start=1):
        record(store, work, d, policy="adaptive", seq=i)
    store.record_group({"id": work.group.id}, status="skipped")
    store.set_planned_points(work.group.id, 0)
    store.flush()
    raise GroupSkipped(f"{work.group.id} {topo.label}: {decision.reason}")


def run_frontier(store: ResultStore, work: WorkItem, rc: RunContext, measure_one: MeasureOne) -> list[int]:
    """Measure this group's points in the adaptive policy's order until none can move the frontier by more
    than the tolerance (or the scope's point budget is spent); record a reason for every point left."""
    group = work.group
    measured: list[int] = []
    seq = 1
    budget_spent = False
    while True:
        scope = build_scope(store, work, rc)
        if scope.measured_count >= scope.options.budget(scope.ladder_count):
            budget_spent = True
            break
        decision = adaptive_next(scope, group.id)
        if decision is None:
            break
        record(store, work, decision, policy="adaptive", seq=seq)
        seq += 1
        measure_one(decision.conc)
        measured.append(decision.conc)
    scope = build_scope(store, work, rc)
    skips = close(scope, only=group.id, budget_spent=budget_spent)
    for d in skips:
        record(store, work, d, policy="adaptive", seq=seq)
        seq += 1
    topo = scope.topology(group.id)
    store.set_planned_points(group.id, len(topo.measured))
    log.info("adaptive %s: measured %d of %d ladder points (%d skipped)", group.id, len(topo.measured),
             len(topo.concs), len(skips))
    return measured


def run_slo(store: ResultStore, work: WorkItem, rc: RunContext, measure_one: MeasureOne) -> list[int]:
    """Bisect this group's ladder for the largest concurrency that meets the SLO targets."""
    from infersweep.store.sweep_state import scope_points

    group = work.group
    slo = slo_targets(work.adaptive, group.config_key)
    search = SloSearch(work.concs or group.concs, slo.targets(),
                       range_mode=work.adaptive.concurrencies == "range")
    store.flush()
    for p in scope_points(store.engine, dag_id=rc.dag_id, run_id=rc.run_id, group_ids=[group.id], isl=group.isl,
                          osl=group.osl):  # a retry resumes with what is stored, judged as when it was measured
        ok = p["status"] == "ok"
        search.record(p["conc"], p["metrics"] if ok else None, p["tput_per_gpu"] if ok else None)
    measured: list[int] = []
    seq = 1
    while (nxt := search.next()) is not None:
        record(store, work, Decision(group.id, nxt, "measure", f"bisection for {slo.describe()}"), policy="slo",
               seq=seq)
        seq += 1
        point = measure_one(nxt)
        search.record(nxt, point.metrics if point.ok else None,
                      _tput_per_gpu(point, group.gpus) if point.ok else None)
        measured.append(nxt)
    for conc in () if search.range_mode else search.concs:  # range mode has no ladder points to account for
        if conc not in search.results:
            record(store, work, Decision(group.id, conc, "skip", search.skip_reason(conc)), policy="slo", seq=seq)
            seq += 1
    best, tput = search.best, search.best_tput
    result = (f"max goodput under SLO ({slo.describe()}): conc {best}, {tput:,.1f} tok/s/GPU" if best is not None
              and tput is not None else f"no concurrency meets the SLO ({slo.describe()})")
    record(store, work, Decision(group.id, 0, "measure", result, tput), policy="slo", seq=seq)
    store.set_planned_points(group.id, len(search.results))
    return measured


def _tput_per_gpu(point: PointResult, gpus: int) -> float | None:
    total = point.metrics.get("total_token_throughput")
    return float(total) / gpus if isinstance(total, int | float) and math.isfinite(total) else None
