"""CLI commands for infersweep.recipes (registered by infersweep.cli).

`infersweep recipe` prints the serve recipe of one serve group as JSON: the exact argv, env, GPU count and
port a server of that group is started with, its fingerprint, and the memory preflight's verdict.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from infersweep.config.sweep import Sweep
    from infersweep.plan.models import ServeGroup


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _topology(g: ServeGroup) -> str:
    parts = [f"isl={g.isl}", f"osl={g.osl}", f"tp={g.tp}", f"ep={g.ep}"]
    if g.dp_attn:
        parts.append("dp-attn")
    for name, value in (("pp", g.pp), ("dcp", g.dcp_size), ("pcp", g.pcp_size)):
        if value != 1:
            parts.append(f"{name}={value}")
    if g.spec_decoding != "none":
        parts.append(f"spec-decoding={g.spec_decoding}")
    return " ".join(parts) + f" concs={','.join(map(str, g.concs))}"


def select_group(
    sweep: Sweep, *, config_key: str, isl: int, osl: int, tp: int, ep: int, dp_attn: bool, spec_decoding: str,
) -> ServeGroup:
    """The one serve group of `config_key` with this topology; ValueError listing the available ones otherwise."""
    import difflib

    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand_jobs

    if config_key not in sweep.entries:
        close = difflib.get_close_matches(config_key, list(sweep.entries), n=5)
        hint = f"; did you mean: {', '.join(close)}" if close else f" ({len(sweep.entries)} keys loaded)"
        raise ValueError(f"config key {config_key!r} is not in the loaded configs{hint}")
    groups = group_jobs(expand_jobs(sweep, PlanFilters(config_keys=(config_key,))))
    if not groups:
        raise ValueError(f"config key {config_key!r} has no single-node fixed-seq-len jobs (multinode or agentic only)")
    matches = [
        g for g in groups
        if (g.isl, g.osl, g.tp, g.ep, g.dp_attn, g.spec_decoding) == (isl, osl, tp, ep, dp_attn, spec_decoding)
    ]
    if len(matches) == 1:
        return matches[0]
    wanted = f"isl={isl} osl={osl} tp={tp} ep={ep}{' dp-attn' if dp_attn else ''} spec-decoding={spec_decoding}"
    listing = "\n".join(f"  {_topology(g)}" for g in groups)
    if not matches:
        raise ValueError(f"{config_key} has no serve group with {wanted}; available topologies:\n{listing}")
    raise ValueError(f"{config_key}: {len(matches)} serve groups match {wanted} (they differ in pp/dcp/pcp):\n{listing}")


def recipe_json(
    sweep: Sweep, group: ServeGroup, *, port: int = 8888, hf_cache: str | None = None,
    served_model_name: str | None = None,
) -> dict[str, Any]:
    """Recipe JSON for one group: the Recipe fields plus fingerprint, concs and the memory verdict."""
    from infersweep.recipes.preflight import preflight
    from infersweep.recipes.registry import build_recipe

    quirks = sweep.quirks_for(group.model_prefix, group.model)
    recipe = build_recipe(group, quirks, port=port, hf_cache=hf_cache, served_model_name=served_model_name)
    nodes = sweep.nodes_for(group.runner)
    # The smallest GPU of the runner's nodes is the one that decides whether the server fits.
    memory_gb = min(n.gpu_memory_gb for n in nodes) if nodes else None
    verdict = preflight(group, quirks, memory_gb)
    return {
        **recipe.to_json(),
        "fingerprint": recipe.fingerprint(),
        "config_key": group.config_key,
        "concs": list(group.concs),
        "eval_concs": list(group.eval_concs),
        "memory": verdict.to_json(),
    }


def recipe_command(
    ctx: typer.Context,
    config: list[Path] | None = typer.Option(
        None, "--config", help="Sweep files, folders of sweep files, or master files (repeatable; default configs/)."),
    config_key: str | None = typer.Option(None, "--config-key", help="Config key, e.g. minimaxm3-fp8-h200-vllm."),
    isl: int | None = typer.Option(None, "--isl", min=1),
    osl: int | None = typer.Option(None, "--osl", min=1),
    tp: int | None = typer.Option(None, "--tp", min=1),
    ep: int = typer.Option(1, "--ep", min=1),
    dp_attn: bool = typer.Option(False, "--dp-attn", help="DP attention (DEP) layout."),
    conc: list[int] | None = typer.Option(None, "--conc", min=1, help="Concurrencies to size for (default: the group's)."),
    spec_decoding: str = typer.Option("none", "--spec-decoding", help="none | mtp | … as in the config."),
    port: int = typer.Option(8888, "--port", min=1, max=65535),
    hf_cache: str | None = typer.Option(None, "--hf-cache", help="Host HF hub cache to mount into the container."),
    served_model_name: str | None = typer.Option(None, "--served-model-name"),
    all_groups: bool = typer.Option(False, "--all", help="Every single-node serve group of the configs."),
    config_keys: list[str] | None = typer.Option(
        None, "--config-keys", help="With --all: only config keys matching these globs (repeatable)."),
    fmt: str = typer.Option("json", "--format", help="json (one group, indented) | jsonl (one object per line)."),
) -> None:
    """Print the serve recipe of one serve group as JSON (image, argv, env, files, gpus, port, memory), or with
    --all one JSON object per serve group.

    Needs --config-key, --isl, --osl and --tp without --all. `infersweep recipe validate-cli` checks recipes
    against vLLM.
    """
    from infersweep.config.errors import ConfigError
    from infersweep.config.sweep import load_sweep
    from infersweep.recipes.errors import RecipeError

    if ctx.invoked_subcommand is not None:
        return
    if fmt not in ("json", "jsonl"):
        _fail(f"--format {fmt!r}: use json or jsonl")
    if all_groups:
        try:
            sweep = load_sweep(config or [Path("configs")])
        except ConfigError as exc:
            _fail(str(exc))
        raise typer.Exit(_print_all(sweep, tuple(config_keys or ("*",)), fmt, port=port, hf_cache=hf_cache))
    if config_keys:
        _fail("--config-keys selects groups for --all; one group is chosen with --config-key")
    missing = [flag for flag, value in (("--config-key", config_key), ("--isl", isl), ("--osl", osl), ("--tp", tp))
               if value is None]
    if config_key is None or isl is None or osl is None or tp is None:
        _fail(f"missing option(s) {', '.join(missing)}: `infersweep recipe` prints the recipe of one serve group "
              "(or run a subcommand: validate-cli)")

    try:
        sweep = load_sweep(config or [Path("configs")])
    except ConfigError as exc:
        _fail(str(exc))
    try:
        group = select_group(sweep, config_key=config_key, isl=isl, osl=osl, tp=tp, ep=ep, dp_attn=dp_attn,
                             spec_decoding=spec_decoding)
        if conc:
            chosen = tuple(sorted(set(conc)))
            group = group.model_copy(update={"concs": chosen, "eval_concs": tuple(c for c in group.eval_concs if c in chosen)})
        out = recipe_json(sweep, group, port=port, hf_cache=hf_cache, served_model_name=served_model_name)
    except (ValueError, RecipeError) as exc:
        _fail(str(exc))
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


#: The keys of one `recipe --all --format jsonl` line (a contract; more may follow, none are renamed).
BATCH_KEYS = ("config-key", "isl", "osl", "tp", "ep", "dp-attn", "pp", "dcp-size", "pcp-size", "spec-decoding",
              "concs", "framework", "image", "argv", "env", "files")


def batch_record(sweep: Sweep, group: ServeGroup, *, port: int = 8888, hf_cache: str | None = None) -> dict[str, Any]:
    """One group's line for `recipe --all`: its topology and its recipe, or `error` when it has none."""
    from infersweep.recipes.errors import RecipeError
    from infersweep.recipes.registry import build_recipe

    out: dict[str, Any] = {
        "config-key": group.config_key, "isl": group.isl, "osl": group.osl, "tp": group.tp, "ep": group.ep,
        "dp-attn": group.dp_attn, "pp": group.pp, "dcp-size": group.dcp_size, "pcp-size": group.pcp_size,
        "spec-decoding": group.spec_decoding, "concs": list(group.concs), "framework": group.framework,
        "image": group.image,
    }
    try:
        recipe = build_recipe(group, sweep.quirks_for(group.model_prefix, group.model), port=port, hf_cache=hf_cache,
                              served_model_name=group.model)
    except RecipeError as exc:
        return {**out, "argv": None, "env": None, "files": None, "error": str(exc)}
    return {**out, "argv": list(recipe.argv), "env": recipe.env, "files": recipe.files, "gpus": recipe.gpus,
            "client": recipe.client.model_dump(mode="json", by_alias=True), "fingerprint": recipe.fingerprint(),
            "error": None}


def _print_all(sweep: Sweep, globs: tuple[str, ...], fmt: str, *, port: int, hf_cache: str | None) -> int:
    import collections
    import fnmatch

    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand_jobs

    keys = tuple(k for k in sweep.entries if any(fnmatch.fnmatchcase(k, g) for g in globs))
    if not keys:
        _fail(f"--config-keys {' '.join(globs)} matches no config key")
    groups = group_jobs(expand_jobs(sweep, PlanFilters(config_keys=keys)))
    records = [batch_record(sweep, g, port=port, hf_cache=hf_cache) for g in groups]
    for rec in records:
        sys.stdout.write(json.dumps(rec) + "\n" if fmt == "jsonl" else json.dumps(rec, indent=2) + "\n")
    failed = collections.Counter(r["framework"] for r in records if r["error"])
    built = collections.Counter(r["framework"] for r in records if not r["error"])
    summary = ", ".join(f"{fw} {built[fw]}/{built[fw] + failed[fw]}" for fw in sorted(set(built) | set(failed)))
    typer.echo(f"recipes: {len(records) - sum(failed.values())} of {len(records)} serve groups built ({summary})",
               err=True)
    return 1 if failed else 0


def validate_cli_command(
    configs: list[Path] | None = typer.Argument(
        None, help="Sweep files or folders whose recipes must parse (default configs/)."),
    vllm_python: Path | None = typer.Option(
        None, "--vllm-python", help="Interpreter of the vLLM install to ask (default $INFERSWEEP_VLLM_PYTHON, "
        "else .venv-vllm/bin/python)."),
    fixtures: bool = typer.Option(
        False, "--fixtures", help="Also summarise the vLLM entries of the InferenceX master files (informational)."),
    fixtures_dir: Path = typer.Option(
        Path("../shared/fixtures/inferencex"), "--fixtures-dir", help="Folder of *master*.yaml files."),
    quirks: Path | None = typer.Option(
        None, "--quirks", help="Quirks for master-file models (default with --fixtures: configs/quirks.yaml)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the full report (every recipe) here."),
    timeout: float = typer.Option(300.0, "--timeout", min=1, help="Seconds the vLLM probe may take."),
) -> None:
    """Parse every planned vLLM recipe with the installed vLLM's own `vllm serve` parser; start nothing.

    Prints one table per source and image: recipes checked, ok, unknown flags (flags this vLLM version
    lacks), invalid values, groups without a recipe. Exits 1 when a recipe of CONFIGS fails, 2 on bad input
    or when vLLM cannot be asked; fixture results never change the exit code.
    """
    from infersweep.config.errors import ConfigError
    from infersweep.config.sweep import load_sweep
    from infersweep.recipes.cli_check import (
        Collected,
        ProbeError,
        check_sources,
        collect_recipes,
        default_vllm_python,
        format_report,
        load_quirks_file,
    )

    paths = configs or [Path("configs")]
    sources: list[Collected] = []
    try:
        sources.append(collect_recipes(load_sweep(paths), name="configs", paths=[str(p) for p in paths],
                                       blocking=True))
        if fixtures:
            masters = sorted(fixtures_dir.glob("*master*.yaml"))
            if not masters:
                _fail(f"--fixtures: no *master*.yaml files in {fixtures_dir} (set --fixtures-dir)")
            table = load_quirks_file(quirks or Path("configs") / "quirks.yaml")
            for master in masters:
                sources.append(collect_recipes(load_sweep([master]), name=f"fixtures {master.name}",
                                               paths=[str(master)], blocking=False, fallback_quirks=table))
        elif quirks is not None:
            _fail("--quirks only applies with --fixtures (sweep files name their own quirks-files)")
    except (ConfigError, ValueError) as exc:
        _fail(str(exc))
    try:
        report = check_sources(sources, vllm_python=vllm_python or default_vllm_python(), timeout_s=timeout)
    except ProbeError as exc:
        _fail(str(exc))
    sys.stdout.write(format_report(report))
    if json_out is not None:
        json_out.write_text(report.model_dump_json(indent=2) + "\n")
    if report.blocking_failures:
        typer.echo(f"error: {report.blocking_failures} recipe(s) of {', '.join(map(str, paths))} do not parse with "
                   f"vLLM {report.vllm_version}", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Attach this package's commands to the top-level app: `recipe` (one group's recipe) and its subcommands."""
    recipe_app = typer.Typer(invoke_without_command=True, no_args_is_help=False, add_completion=False)
    recipe_app.callback()(recipe_command)
    recipe_app.command("validate-cli")(validate_cli_command)
    app.add_typer(recipe_app, name="recipe")
