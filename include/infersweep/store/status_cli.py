"""`infersweep status`: the running sweeps, which group holds which node, points done and left, elapsed and
estimated time (read-only on the results store)."""

from __future__ import annotations

from enum import StrEnum

import typer


class Format(StrEnum):
    """Output format of `infersweep status`."""

    text = "text"
    json = "json"


def status(
    db: str | None = typer.Option(None, "--db", help="Results DB URL (default: INFERSWEEP_DB_URL, the "
                                  "infersweep_results connection, then .infersweep/results.sqlite)."),
    fmt: Format = typer.Option(Format.text, "--format", help="text (for people) or json (for scripts)."),
    dag_id: str | None = typer.Option(None, "--dag-id", help="Only this sweep DAG's runs and leases."),
    run_id: str | None = typer.Option(None, "--run-id", help="This run, whatever its state (default: every "
                                      "running run)."),
) -> None:
    """Show the running sweeps: each serve group's stage (serve → benchmark 3/4 → eval), the node it holds,
    its points done and left, its elapsed time and an estimate of the time left at this run's pace so far
    ("?" until a point is measured), and every node lease held."""
    from infersweep.store.cli import reading
    from infersweep.store.status import load_status, render_text

    with reading(db, command="infersweep status", option="--db") as engine:
        result = load_status(engine, dag_id=dag_id, run_id=run_id, running_only=run_id is None)
    typer.echo(result.model_dump_json(indent=2) if fmt is Format.json else render_text(result))


def register(app: typer.Typer) -> None:
    """Attach `status` to the top-level app."""
    app.command("status")(status)
