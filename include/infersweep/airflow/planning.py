"""The `plan` task: config + trigger params + the store's finished work → the serve groups to run.

Everything a chain needs is decided here, once, and handed to the mapped tasks as `WorkItem`s (recipe,
nodes, client settings), so later tasks never re-read the config and a retry sees the same plan.
"""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from infersweep.airflow import policies
from infersweep.airflow.context import RunContext, open_store
from infersweep.airflow.params import advanced_conf
from infersweep.airflow.payloads import EvalPlan, WorkItem
from infersweep.airflow.settings import AirflowSettings
from infersweep.config.inventory import Node
from infersweep.config.sweep import Sweep, load_sweep
from infersweep.faults.errors import ClassifiedError
from infersweep.plan.groups import group_jobs, multinode_groups
from infersweep.plan.models import AGENTIC, AgenticJob, MultinodeJob, ServeGroup
from infersweep.plan.planner import Expansion, PlanFilters, expand
from infersweep.recipes import rules
from infersweep.recipes.preflight import preflight
from infersweep.recipes.registry import build_recipe
from infersweep.recipes.topology import TopologyRecipe

log = logging.getLogger(__name__)


#: Trigger params that filter serve groups by the layout field of the same name (empty = all).
_LAYOUT_FILTERS = ("tp", "ep", "pp", "dcp_size", "pcp_size")


def _wanted(group: ServeGroup, params: dict[str, Any]) -> bool:
    for name in _LAYOUT_FILTERS:
        if params.get(name) and getattr(group, name) not in params[name]:
            return False
    dp = params.get("dp_attn", "any")
    return dp == "any" or (dp == "true") == group.dp_attn


def resolve_image(sweep: Sweep, config_key: str, rc: RunContext) -> str:
    """The `image` param, else the sweep's image for the run's logical date (image-history, then the
    image-tag pattern), else the config entry's image. Runs without a logical date (REST `logical_date: null`)
    use the config's image."""
    override = rc.params.get("image")
    if override:
        return str(override)
    day = rc.logical_day
    if day is not None:
        dated = sweep.image_for(date(day.year, day.month, day.day), config_key)
        if dated:
            return dated
    return sweep.entries[config_key].image


def not_executed(agentic: list[AgenticJob | MultinodeJob]) -> dict[str, Any] | None:
    """What a run records (and its summary shows) about the key's agentic-coding rows: planned exactly as
    InferenceX plans them, not executed yet."""
    if not agentic:
        return None
    return {AGENTIC: {"status": "planned, not executed", "jobs": len(agentic),
                      "exp-names": [a.exp_name for a in agentic]}}


def select_groups(sweep: Sweep, config_key: str, params: dict[str, Any],
                  expansion: Expansion | None = None) -> list[ServeGroup]:
    """The config key's serve groups after the trigger's filters (seq-lens, layout, dp-attn, concs, eval)."""
    seq_lens = tuple(params.get("seq_lens") or ())
    if expansion is None:
        expansion = expand(sweep, PlanFilters(config_keys=(config_key,)))
    groups = []
    for g in [*group_jobs(expansion.jobs), *multinode_groups(expansion.multinode, sweep.runners)]:
        if seq_lens and g.seq_len not in seq_lens:
            continue
        if not _wanted(g, params):
            continue
        concs = tuple(c for c in g.concs if not params.get("concs") or c in params["concs"])
        if not concs:
            continue
        evals = tuple(c for c in g.eval_concs if c in concs) if params.get("eval", True) else ()
        groups.append(g.model_copy(update={"concs": concs, "eval_concs": evals}))
    return groups


def _pool_nodes(sweep: Sweep, group: ServeGroup) -> list[Node]:
    """Inventory nodes of every runner label the group's pools lease (a heterogeneous topology has two)."""
    out: list[Node] = []
    for runner in dict.fromkeys(p.runner for p in group.pools):
        out.extend(n for n in sweep.nodes_for(runner) if n not in out)
    return out


def _topology(group: ServeGroup) -> TopologyRecipe:
    """The processes of a multinode group's server (`recipes.disagg`), or the plan task fails with the
    reason (a framework without multi-node recipes is a config error, not a retryable failure)."""
    from infersweep.plan.groups import multinode_job
    from infersweep.recipes.disagg import build_topology
    from infersweep.recipes.errors import RecipeError

    try:
        topology = build_topology(multinode_job(group), group.pools, served_model_name=group.model)
    except RecipeError as exc:
        raise ClassifiedError("config_error", str(exc)) from exc
    return topology.model_copy(update={"serve_group": group.id})


def _policy_line(adaptive: Any, policy: str) -> str:
    if policy == "slo":
        return f"bisection for {adaptive.slo.describe()}"
    budget = f", budget {adaptive.max_points:g} points" if adaptive.max_points else ""
    return (f"tolerance {adaptive.tolerance:.1%}, noise {adaptive.noise:.1%}, priors {', '.join(adaptive.priors) or 'none'}"
            f", concurrencies {adaptive.concurrencies}{budget}")


def plan_run(config_key: str, rc: RunContext, *, source: str | None = None) -> list[WorkItem]:
    """Record the run and its groups; return one work item per group that still has something to do.

    `source` is the config file the DAG was generated from: only it is loaded, so a broken sibling sweep
    file cannot fail this run (None loads every configured path, as the CLI does)."""
    settings = AirflowSettings.from_env()
    paths = [source] if source is not None else list(settings.config_paths)
    sweep = load_sweep(paths)
    if config_key not in sweep.entries:
        raise ClassifiedError("config_error", f"config key {config_key!r} is no longer in {', '.join(map(str, paths))}")
    params = rc.params
    extra = advanced_conf(params)
    engine_name = params.get("engine") or sweep.settings_for(config_key).engine
    image = resolve_image(sweep, config_key, rc)
    expansion = expand(sweep, PlanFilters(config_keys=(config_key,)))
    skipped = not_executed([*expansion.agentic, *(m for m in expansion.multinode if m.scenario_type is not None)])
    store = open_store(rc, settings)
    store.start_run(trigger_kind=rc.trigger_kind, logical_date=rc.logical_day, config_key=config_key,
                    image_tag=image, engine=engine_name, params=params, not_executed=skipped)
    if skipped:
        log.warning("agentic-coding: planned, not executed: %d jobs (%s)", len(expansion.agentic),
                    ", ".join(a.exp_name for a in expansion.agentic))
    if params.get("reuse_run_id"):
        from infersweep.store.reuse import copy_run_results

        store.flush()
        copied = copy_run_results(store.engine, str(params["reuse_run_id"]), rc.run_id, target_dag_id=rc.dag_id)
        log.info("reused %s from run %s", copied, params["reuse_run_id"])

    file_settings = sweep.settings_for(config_key)
    bench, sim = file_settings.bench, file_settings.sim
    policy = policies.mode_of(params, file_settings.adaptive)
    if policy == "slo":
        policies.slo_targets(file_settings.adaptive, config_key)  # fail the plan, not every group, without targets
    if policy != "off":
        log.info("point policy: %s (%s)", policy, _policy_line(file_settings.adaptive, policy))
    eval_settings = sweep.eval_for(config_key)
    work: list[WorkItem] = []
    table: list[str] = []
    for group in select_groups(sweep, config_key, params, expansion):
        group = group.model_copy(update={"image": image, "model": extra.model or group.model})
        quirks = sweep.quirks_for(group.model_prefix, group.model)
        group = rules.with_quirk_context(group, quirks)
        topology = None
        if group.multinode:
            nodes = _pool_nodes(sweep, group)
            topology = _topology(group)
            recipe = topology.entry_component.recipe
            # The memory preflight models one server process; a pool's per-rank fit is not checked yet.
            fit, why = "unknown", "multinode: no per-pool memory preflight yet"
            store.record_group(group, recipe=topology.model_dump(mode="json"),
                               recipe_fingerprint=topology.fingerprint(),
                               memory_verdict={"verdict": fit, "reason": why}, engine=engine_name, status="planned")
        else:
            nodes = sweep.nodes_for(group.runner)
            recipe = build_recipe(group, quirks, served_model_name=group.model)
            verdict = preflight(group, quirks, gpu_memory_gb=nodes[0].gpu_memory_gb if nodes else None)
            fit, why = verdict.verdict, verdict.reason
            store.record_group(group, recipe=recipe, memory_verdict=verdict.to_json(), engine=engine_name,
                               status="planned")
        fingerprint = topology.fingerprint() if topology is not None else recipe.fingerprint()
        line = f"{group.id} {group.layout} {group.isl}/{group.osl} concs={list(group.concs)}"
        if fit == "cannot-fit":
            store.fail_group(group.id, ClassifiedError("memory_preflight", why), concs=group.concs,
                             isl=group.isl, osl=group.osl)
            table.append(f"{line}  SKIP (memory preflight: {why})")
            continue
        reuse = store.plan_reuse(group, recipe_fingerprint=fingerprint, image_digest_or_tag=image,
                                 backend=engine_name, force=bool(params.get("force")))
        if not reuse.needs_server:
            store.record_group({"id": group.id}, status="reused")
            table.append(f"{line}  DONE (reused {sorted(reuse.done_concs)})")
            continue
        table.append(f"{line}  RUN {reuse.pending_concs} eval {reuse.pending_eval_concs} [{fit}]")
        work.append(WorkItem(
            group=group, recipe=recipe, fingerprint=fingerprint, topology=topology, engine=engine_name, image=image,
            nodes=tuple(nodes), concs=tuple(reuse.pending_concs), eval_concs=tuple(reuse.pending_eval_concs),
            bench=bench,
            eval=EvalPlan(task=eval_settings.task, limit=extra.eval_limit or eval_settings.limit,
                          threshold=eval_settings.threshold_for(group.model_prefix), data_dir=eval_settings.data_dir),
            sim=sim.model_copy(update={"time_scale": extra.sim_time_scale or sim.time_scale}),
            adaptive=file_settings.adaptive, repeats=file_settings.repeats,
        ))
    log.info("plan for %s (%s, image %s, engine %s):\n  %s", config_key, rc.run_id, image, engine_name,
             "\n  ".join(table) or "(no serve groups match the params)")
    if params.get("dry_run"):
        log.info("dry_run: nothing is started")
        store.finish_run("dry_run")
        return []
    return work
