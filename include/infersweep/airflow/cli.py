"""CLI commands for the Airflow side: `infersweep airflow bootstrap` and `infersweep demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from infersweep.airflow.settings import REPO_ROOT

airflow_app = typer.Typer(help="Airflow integration: pools, connections.", no_args_is_help=True)


@airflow_app.command("bootstrap")
def bootstrap(
    config: list[Path] = typer.Option(None, "--config", help="Sweep files/folders (default INFERSWEEP_CONFIGS or configs/)."),
) -> None:
    """Create or update one Airflow pool per runner label (slots = inventory nodes)."""
    from infersweep.airflow.bootstrap import bootstrap_pools
    from infersweep.airflow.settings import AirflowSettings
    from infersweep.config.sweep import load_sweep

    paths = list(config) if config else list(AirflowSettings.from_env().config_paths)
    pools = bootstrap_pools(load_sweep(paths).inventory)
    for name, slots in pools.items():
        typer.echo(f"pool {name}: {slots} slot(s)")
    if not pools:
        typer.echo("no inventory in the sweep files: no pools created (add `inventory:` to a sweep file)")


def demo(
    config: list[Path] = typer.Option(None, "--config", help="Sweep files (default configs/demo.yaml)."),
    engine: str = typer.Option(None, "--engine", help="sim | vllm-process | vllm-docker (default: the sweep's)."),
    model: str = typer.Option(None, "--model", help="Model override (HF id or local path), e.g. for vllm-process."),
    work_dir: Path = typer.Option(REPO_ROOT / ".infersweep" / "demo", "--work-dir", help="Where DBs, logs and reports go."),
) -> None:
    """Run the demo sweep end to end through Airflow in-process (dag.test on SQLite)."""
    from infersweep.airflow.demo import run_demo

    configs = list(config) if config else [REPO_ROOT / "configs" / "demo.yaml"]
    raise typer.Exit(run_demo(configs=configs, work_dir=work_dir, engine=engine, model=model))


def register(app: typer.Typer) -> None:
    """Attach `airflow …` and `demo` to the top-level app."""
    app.add_typer(airflow_app, name="airflow")
    app.command("demo")(demo)
