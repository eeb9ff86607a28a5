"""CLI commands for the Airflow side: `infersweep airflow bootstrap` and `infersweep demo`."""

from __future__ import annotations

from pathlib import Path

import typer

from infersweep.airflow.settings import REPO_ROOT

airflow_app = typer.Typer(help="Airflow integration: pools, connections.", no_args_is_help=True)


@airflow_app.command("bootstrap")
def bootstrap(
    config: list[Path] = typer.Option(None, "--config", help="Sweep files/folders (default INFERSWEEP_CONFIGS or configs/)."),
    sync: bool = typer.Option(True, "--sync-dags/--no-sync-dags", help="Also write the generated DAG files."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when a sweep file does not load."),
) -> None:
    """Create or update one Airflow pool per runner label (slots = inventory nodes), and write the generated
    sweep DAG files. A sweep file that does not load is reported and skipped."""
    from infersweep.airflow.bootstrap import bootstrap_pools
    from infersweep.airflow.dagfiles import config_sources
    from infersweep.airflow.settings import AirflowSettings
    from infersweep.config.errors import ConfigError
    from infersweep.config.inventory import Node
    from infersweep.config.sweep import load_sweep

    paths = list(config) if config else list(AirflowSettings.from_env().config_paths)
    # One source at a time, as the DAG files load them: a broken sweep file costs its own pools only (its
    # DAG file shows the error), and the stack still starts for the others.
    inventory: dict[str, list[Node]] = {}
    broken = 0
    for source in config_sources(paths):
        try:
            sweep = load_sweep([source])
        except ConfigError as exc:
            broken += 1
            typer.echo(f"skipped {source}:\n{exc}", err=True)
            continue
        for label, nodes in sweep.inventory.items():
            known = {n.name for n in inventory.setdefault(label, [])}
            inventory[label].extend(n for n in nodes if n.name not in known)
    pools = bootstrap_pools(inventory)
    for name, slots in pools.items():
        typer.echo(f"pool {name}: {slots} slot(s)")
    if not pools:
        typer.echo("no inventory in the sweep files: no pools created (add `inventory:` to a sweep file)")
    if sync:
        _sync(None)
    if broken and strict:
        raise typer.Exit(1)


@airflow_app.command("sync-dags")
def sync_dags(
    dags_folder: Path = typer.Option(None, "--dags-folder",
                                     help="Airflow's dags folder (default AIRFLOW__CORE__DAGS_FOLDER, else the repo's dags/)."),
) -> None:
    """Write the generated sweep DAG files (one per sweep file, split when large) and remove stale ones."""
    _sync(dags_folder)


def _sync(dags_folder: Path | None) -> None:
    import os

    from infersweep.airflow.dagfiles import sync_dag_files

    folder = dags_folder or Path(os.environ.get("AIRFLOW__CORE__DAGS_FOLDER") or REPO_ROOT / "dags")
    report = sync_dag_files(folder)
    typer.echo(f"DAG files in {report.folder}: {len(report.written)} written, {len(report.unchanged)} unchanged, "
               f"{len(report.removed)} removed")
    for source, error in report.broken.items():
        typer.echo(f"  {source} does not load; its DAG file shows the error: {error}", err=True)


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
