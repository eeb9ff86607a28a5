"""`infersweep plan`: print the job set (InferenceX rows), our full plan, serve groups, or a human table."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from infersweep.plan.summary import Plan, Preflight


class OutputFormat(enum.StrEnum):
    inferencex = "inferencex"
    json = "json"
    table = "table"
    groups = "groups"


class SeqLen(enum.StrEnum):
    k1k1 = "1k1k"
    k8k1 = "8k1k"


def _split(values: list[str] | None) -> tuple[str, ...]:
    # Repeatable options also take comma-separated values: --precision fp4,fp8.
    return tuple(v.strip() for raw in values or () for v in raw.split(",") if v.strip())


def plan_command(
    paths: list[Path] = typer.Argument(..., help="Sweep files, folders of sweep files, or InferenceX master files."),
    runners: Path | None = typer.Option(None, "--runners", help="runners.yaml (default: one beside a master file)."),
    single_node: bool = typer.Option(False, "--single-node", help="Single-node entries only (as the reference)."),
    multi_node: bool = typer.Option(False, "--multi-node", help="Multinode entries only (their serve groups run through the DAG)."),
    config_keys: list[str] | None = typer.Option(None, "--config-keys", help="Config keys or globs (repeatable)."),
    model_prefix: list[str] | None = typer.Option(None, "--model-prefix", help="Config-key prefix (repeatable)."),
    precision: list[str] | None = typer.Option(None, "--precision", help="e.g. fp4, fp8 (repeatable)."),
    framework: list[str] | None = typer.Option(None, "--framework", help="e.g. vllm, sglang (repeatable)."),
    runner_type: list[str] | None = typer.Option(None, "--runner-type", help="Runner label, e.g. h200 (repeatable)."),
    seq_lens: list[SeqLen] | None = typer.Option(None, "--seq-lens", help="1k1k and/or 8k1k (repeatable)."),
    min_conc: int | None = typer.Option(None, "--min-conc", min=1),
    max_conc: int | None = typer.Option(None, "--max-conc", min=1, help="Above-range points run at max-conc."),
    max_tp: int | None = typer.Option(None, "--max-tp", min=1),
    max_ep: int | None = typer.Option(None, "--max-ep", min=1, help="Clamps ep (reference semantics)."),
    output: OutputFormat = typer.Option(OutputFormat.table, "--format", help="inferencex | json | table | groups"),
    prune: bool = typer.Option(False, "--prune", help="Drop serve groups the memory preflight says cannot fit."),
) -> None:
    """Expand sweep configs into jobs and serve groups (InferenceX-identical job set)."""
    from pydantic import ValidationError

    from infersweep.config.errors import ConfigError
    from infersweep.config.sweep import load_sweep
    from infersweep.plan.planner import PlanFilterError, PlanFilters, PlanInputError
    from infersweep.plan.summary import build_plan

    try:
        filters = PlanFilters(
            config_keys=_split(config_keys), model_prefix=_split(model_prefix), precision=_split(precision),
            framework=_split(framework), runner_type=_split(runner_type),
            seq_lens=tuple(s.value for s in seq_lens or ()), min_conc=min_conc, max_conc=max_conc,
            max_tp=max_tp, max_ep=max_ep, single_node=single_node, multi_node=multi_node,
        )
        sweep = load_sweep(paths, runners=runners)
        for warning in sweep.warnings:
            typer.echo(f"warning: {dataclasses.replace(warning, allowed=None)}", err=True)
        needs_memory = prune or output in (OutputFormat.groups, OutputFormat.table, OutputFormat.json)
        preflight = _preflight() if needs_memory else None
        if prune and preflight is None:
            _fail("--prune needs the memory preflight (infersweep.recipes.preflight), which is not installed")
        plan = build_plan(sweep, filters, preflight=preflight, prune=prune)
    except (ConfigError, PlanInputError) as exc:
        _fail(str(exc))
    except (PlanFilterError, ValidationError) as exc:
        _fail(f"bad filter: {exc}")
    for group, verdict in plan.pruned:
        typer.echo(f"pruned {group.id} {group.name}: cannot fit ({_memory_brief(verdict)})", err=True)
    typer.echo(render(plan, output))


def render(plan: Plan, output: OutputFormat) -> str:
    """The text printed for one output format."""
    from infersweep.plan.summary import group_json, inferencex_rows, job_json

    if output is OutputFormat.inferencex:
        return json.dumps(inferencex_rows(plan.jobs, plan.agentic, plan.key_order, plan.multinode))
    if output is OutputFormat.groups:
        return json.dumps([group_json(g, plan.memory.get(g.id)) for g in [*plan.groups, *plan.multinode_groups]],
                          indent=2)
    if output is OutputFormat.json:
        return json.dumps({
            "summary": plan.summary.to_json(),
            "groups": [group_json(g, plan.memory.get(g.id)) for g in plan.groups],
            "jobs": [job_json(j) for j in plan.jobs],
            "agentic-jobs": [job_json(a) for a in plan.agentic],
            "multinode-jobs": [job_json(m) for m in plan.multinode],
        }, indent=2)
    return render_table(plan)


def render_table(plan: Plan) -> str:
    """Human view: counts, the boot saving, unsupported work, then one line per serve group."""
    s, u = plan.summary, plan.summary.unsupported
    lines = [
        f"plan: {_n(s.jobs, 'job')} ({s.eval_jobs:,} with eval) in {_n(s.groups, 'serve group')} "
        f"from {_n(s.config_keys, 'config key')}",
        f"boots: {s.jobs:,} → {s.groups:,} ({s.boots_saved:,} server starts saved)",
    ]
    lines.extend(s.not_executed_lines())
    if u.excluded_multinode_keys:
        lines.append(f"excluded by --single-node: {u.excluded_multinode_keys} multinode config keys")
    if s.pruned_groups:
        lines.append(f"pruned (cannot fit): {s.pruned_groups} groups, {s.pruned_jobs} jobs")
    header = ("ID", "CONFIG KEY", "SEQ", "LAYOUT", "GPUS", "CONCS", "EVAL", "MEMORY")
    rows = [header]
    for g in [*plan.groups, *plan.multinode_groups]:
        rows.append((g.id, g.config_key, g.seq_len, g.layout, str(g.gpus),
                     ",".join(map(str, g.concs)), ",".join(map(str, g.eval_concs)) or "-",
                     _memory_brief(plan.memory.get(g.id))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines.append("")
    lines.extend("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
    return "\n".join(lines)


def _memory_brief(result: Any) -> str:
    """`fits 55.6/72.0 GB, KV 12.3 GB`: verdict, weights per rank vs the budget, KV-cache headroom."""
    if result is None:
        return "-"
    verdict = str(getattr(result, "verdict", "?"))
    data = result.to_json() if hasattr(result, "to_json") else {}
    weights, budget, kv = data.get("weights_per_rank_gb"), data.get("budget_gb"), data.get("kv_headroom_gb")
    text = verdict
    if isinstance(weights, int | float) and isinstance(budget, int | float):
        text += f" {weights:.1f}/{budget:.1f} GB"
    if isinstance(kv, int | float):
        text += f", KV {kv:.1f} GB"
    return text


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _preflight() -> Preflight | None:
    """The recipes package's memory preflight, or None when it is not available."""
    try:
        from infersweep.recipes.preflight import preflight
    except ImportError:
        return None
    return preflight  # type: ignore[no-any-return]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    sys.stdout.flush()
    raise typer.Exit(code=2)


def register(app: typer.Typer) -> None:
    """Attach this package's commands to the top-level app."""
    app.command("plan")(plan_command)
