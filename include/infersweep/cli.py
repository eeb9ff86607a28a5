"""The `infersweep` command line.

Each concern owns its commands in `<package>/cli.py` and exposes `register(app)`; this module only
assembles them, so adding a command never means editing a shared god-module. Sub-CLIs import their
heavy dependencies (airflow, aiohttp, sqlalchemy) inside the command bodies to keep `--help` fast.
"""

from __future__ import annotations

import typer

from infersweep.airflow import cli as airflow_cli
from infersweep.bench import cli as bench_cli
from infersweep.engines import cli as engines_cli
from infersweep.evals import cli as evals_cli
from infersweep.plan import cli as plan_cli
from infersweep.recipes import cli as recipes_cli
from infersweep.report import cli as report_cli
from infersweep.store import cli as store_cli
from infersweep.store import status_cli

app = typer.Typer(
    name="infersweep",
    help="Benchmark LLM inference servers with InferenceX-compatible sweeps on Airflow 3.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)



@app.command("version")
def version() -> None:
    """Print the infersweep version."""
    from infersweep import __version__

    typer.echo(__version__)


for _module in (plan_cli, recipes_cli, engines_cli, bench_cli, evals_cli, store_cli, status_cli, report_cli,
                airflow_cli):
    _module.register(app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
