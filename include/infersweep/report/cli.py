"""CLI commands for infersweep.report (registered by infersweep.cli).

`infersweep report [--db URL] [--run RUN_ID ...] [--results-dir DIR] [--cost-per-gpu-hour RUNNER=USD ...]
                   [--json FILE] --out report.html`
`infersweep report compare --base RUN_OR_IMAGE --head RUN_OR_IMAGE [--out FILE] [--fail-on-regression]`
`infersweep report history --config-key K [--since DATE] [--format text|json|html] [--out FILE]`
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

report_app = typer.Typer(
    name="report",
    help="Pareto reports (HTML, plotly inlined) and the regression gate.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"infersweep report: {message}", err=True)
    return typer.Exit(code)


def _store_error(db: str | None, exc: Exception) -> str:
    """One line naming the (masked) store URL, the driver's message and the usual fix."""
    from infersweep.store.db import mask_url
    from infersweep.store.readonly import resolve_read_url

    detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return (f"cannot read the results store {mask_url(resolve_read_url(db))}: {detail} "
            "(is the URL right, and has `infersweep db upgrade` created the schema?)")


def _read_url(db: str | None) -> str:
    """The store URL opened read-only (a report never creates a folder, a file or a schema); exits with the
    path and how to get results when the SQLite store does not exist."""
    from infersweep.store.db import StoreConfigError
    from infersweep.store.readonly import readonly_url

    try:
        return readonly_url(db, option="--db")
    except StoreConfigError as exc:
        raise _fail(str(exc)) from None


@report_app.callback()
def report_command(
    ctx: typer.Context,
    db: str | None = typer.Option(None, "--db", help="Results DB URL (default: INFERSWEEP_DB_URL, the "
                                  "infersweep_results connection, then .infersweep/results.sqlite)."),
    run: list[str] | None = typer.Option(None, "--run", help="dag_id/run_id or an Airflow run id (repeatable). "
                                         "Default: the newest run of each sweep DAG."),
    dag_id: list[str] | None = typer.Option(None, "--dag-id", help="Only these sweep DAGs (repeatable)."),
    results_dir: Path | None = typer.Option(None, "--results-dir", help="Read result JSON files (infersweep "
                                            "spool .jsonl, InferenceX agg_*.json, ReportPoint JSON) instead of a DB."),
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
    title: str = typer.Option("infersweep report", "--title"),
    cost: list[str] | None = typer.Option(None, "--cost-per-gpu-hour", metavar="RUNNER=USD",
                                          help="USD per GPU-hour of a runner label (repeatable), for $ per million "
                                               "output tokens; replaces the inventory's cost-per-gpu-hour stored "
                                               "with the results."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the frontier of every config key and "
                                         "ISL/OSL as JSON ($/Mtok, J/token, intervals, cost sources)."),
) -> None:
    """Build the HTML report: per model and ISL/OSL, throughput/GPU vs interactivity and vs E2E latency
    with Pareto frontiers, per config key the frontier points with $ per million output tokens and J/token,
    a table of every point (failures with their class) and the run summary."""
    if ctx.invoked_subcommand is not None:
        return
    import orjson
    from sqlalchemy.exc import SQLAlchemyError

    from infersweep.report.data import parse_cost_option
    from infersweep.report.json_source import ResultFileError
    from infersweep.report.service import build_report, write_atomic
    from infersweep.report.store_source import SelectorNotFound
    from infersweep.report.summary import frontiers_json
    from infersweep.report.text import cost_frontier_table, summary_table
    from infersweep.store.db import StoreConfigError

    if results_dir is not None and (db or run):
        raise _fail("--results-dir reads files; it cannot be combined with --db or --run")
    try:
        costs = parse_cost_option(cost or ())
    except ValueError as exc:
        raise _fail(str(exc)) from None
    db_url = _read_url(db) if results_dir is None else None
    try:
        outcome = build_report(out, db_url=db_url, runs=run or (), results_dir=results_dir, dag_ids=dag_id or (),
                               title=title, costs=costs)
    except (SelectorNotFound, ResultFileError, StoreConfigError) as exc:
        raise _fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _fail(_store_error(db, exc)) from None
    if outcome.summaries:
        typer.echo(summary_table(outcome.summaries))
    frontier = cost_frontier_table(outcome.points)
    if frontier:
        typer.echo("\n" + frontier + "\n")
    if json_out is not None:
        write_atomic(json_out, orjson.dumps(frontiers_json(outcome.points), option=orjson.OPT_INDENT_2).decode())
    total = sum(s.total for s in outcome.summaries) if outcome.summaries else len(outcome.points)
    typer.echo(f"{outcome.green}/{max(total, len(outcome.points))} points green; report: {outcome.path.resolve()}")


@report_app.command("compare")
def compare_command(
    base: str = typer.Option(..., "--base", help="Baseline: dag_id/run_id, run id, image tag/digest, or a result "
                             "file/folder."),
    head: str = typer.Option(..., "--head", help="Candidate, same forms as --base."),
    db: str | None = typer.Option(None, "--db", help="Results DB URL (see `infersweep report --help`)."),
    out: Path | None = typer.Option(None, "--out", help="Write the frontier-overlay HTML here."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression",
                                            help="Exit 1 when a point regresses beyond its noise band (2: nothing "
                                                 "comparable)."),
    noise_floor: float = typer.Option(0.05, "--noise-floor", min=0.0, max=1.0,
                                      help="Smallest noise band, as a fraction (0.05 = 5 %)."),
    noise_k: float = typer.Option(3.0, "--noise-k", min=0.1, help="Band = max(floor, k × relative sigma)."),
    metric: list[str] | None = typer.Option(None, "--metric", help="Gated metric (repeatable; default: "
                                            "tput_per_gpu, median_intvty, median_ttft_ms, median_e2el_ms)."),
    no_history: bool = typer.Option(False, "--no-history", help="Do not use earlier runs as a noise source."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the gate result as JSON."),
) -> None:
    """Per-point deltas between two runs or two images, a frontier overlay, and the regression gate."""
    import orjson
    from sqlalchemy.exc import SQLAlchemyError

    from infersweep.report.json_source import ResultFileError
    from infersweep.report.metrics import DEFAULT_GATE_METRICS
    from infersweep.report.service import compare_and_gate, write_atomic, write_compare
    from infersweep.report.store_source import SelectorNotFound
    from infersweep.report.text import gate_table
    from infersweep.store.db import StoreConfigError

    # the store is read only when a side is not a result file/folder (history comes from the store too)
    needs_store = not (Path(base).exists() and Path(head).exists())
    db_url = _read_url(db) if needs_store else db
    try:
        comparison, result = compare_and_gate(
            base, head, db_url=db_url, floor=noise_floor, k=noise_k, metrics=tuple(metric or DEFAULT_GATE_METRICS),
            use_history=not no_history,
        )
    except (SelectorNotFound, ResultFileError, StoreConfigError, ValueError) as exc:
        raise _fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _fail(_store_error(db, exc)) from None
    typer.echo(gate_table(result))
    if out is not None:
        typer.echo(f"compare report: {write_compare(out, comparison, result).resolve()}")
    if json_out is not None:
        write_atomic(json_out, orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
    if fail_on_regression and result.exit_code:
        raise typer.Exit(result.exit_code)


class HistoryFormat(StrEnum):
    """Output of `infersweep report history`."""

    text = "text"
    json = "json"
    html = "html"


@report_app.command("history")
def history_command(
    config_key: str = typer.Option(..., "--config-key", help="The sweep's config key (its DAG id)."),
    since: str | None = typer.Option(None, "--since", help="Only runs whose logical date is on or after DATE "
                                     "(YYYY-MM-DD or ISO 8601; UTC when no zone is given)."),
    db: str | None = typer.Option(None, "--db", help="Results DB URL (see `infersweep report --help`)."),
    fmt: HistoryFormat = typer.Option(HistoryFormat.text, "--format", help="text table, JSON, or an HTML page "
                                      "with charts (plotly inlined)."),
    out: Path | None = typer.Option(None, "--out", help="Write here instead of stdout (html: default history.html)."),
    level: list[float] | None = typer.Option(None, "--level", help="Interactivity level in tok/s/user (repeatable; "
                                             "default: three levels most runs' frontiers reach)."),
    noise_floor: float = typer.Option(0.05, "--noise-floor", min=0.0, max=1.0,
                                      help="Smallest noise band, as a fraction (0.05 = 5 %)."),
    noise_k: float = typer.Option(3.0, "--noise-k", min=0.1, help="Band = max(floor, k × relative sigma)."),
) -> None:
    """How a config key's frontier and its throughput/GPU at fixed interactivity levels moved across runs, per
    serve topology, each run labelled by image and date; regressions beyond the gate's noise band are marked."""
    from sqlalchemy.exc import SQLAlchemyError

    from infersweep.report.history import build_history, history_text, load_history_input, parse_since
    from infersweep.report.history_html import render_history
    from infersweep.report.service import write_atomic
    from infersweep.store.db import StoreConfigError, get_engine

    try:
        since_dt = parse_since(since) if since else None
    except ValueError as exc:
        raise _fail(str(exc)) from None
    db_url = _read_url(db)
    try:
        points, runs = load_history_input(get_engine(db_url), config_key, since=since_dt)
    except StoreConfigError as exc:
        raise _fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _fail(_store_error(db, exc)) from None
    if not runs:
        raise _fail(f"no results for config key {config_key!r}" + (f" since {since}" if since else "")
                    + " in the results store (is --config-key the sweep's DAG id, and --db the right store?)")
    history = build_history(points, config_key=config_key, runs=runs, levels=level or None, since=since_dt,
                            floor=noise_floor, k=noise_k)
    if fmt is HistoryFormat.html:
        path = write_atomic(out or Path("history.html"), render_history(history))
        typer.echo(f"{len(history.regressions())} regression(s); history: {path.resolve()}")
        return
    text = history.model_dump_json(indent=2) if fmt is HistoryFormat.json else history_text(history)
    if out is None:
        typer.echo(text)
    else:
        written = write_atomic(out, text + "\n")
        typer.echo(f"history: {written.resolve()}")


def register(app: typer.Typer) -> None:
    """Attach this package's commands to the top-level app."""
    app.add_typer(report_app, name="report")
