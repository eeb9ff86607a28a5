"""`infersweep engines …`: the download step, the offline check, the container reaper and a GPU sample by hand.

Registered from `engines/cli.py` (`ops_cli.register(app)`); heavy imports stay inside the commands.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

engines_app = typer.Typer(name="engines", help="Weights download, container reaper and GPU telemetry tools.",
                          no_args_is_help=True)


def _echo_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=1, sort_keys=True, default=str))


@engines_app.command("download")
def download(
    model: Annotated[str, typer.Argument(help="HF repo id (or a local path, which is only checked)")],
    revision: Annotated[str | None, typer.Option(help="branch, tag or commit (default main)")] = None,
    hf_home: Annotated[str | None, typer.Option("--hf-home", help="HF_HOME of the node (cache = <it>/hub)")] = None,
    cache_domain: Annotated[str | None, typer.Option(help="nodes sharing one cache FS share a domain")] = None,
    pg_url: Annotated[str | None, typer.Option(help="Postgres for the advisory lock (else INFERSWEEP_DB_URL, "
                                                     "else a file lock)")] = None,
    token_conn_id: Annotated[str | None, typer.Option(help="Airflow connection holding the HF token "
                                                            "(else HF_TOKEN)")] = None,
    endpoint: Annotated[str | None, typer.Option(help="hub endpoint (mirror)")] = None,
    max_attempts: Annotated[int, typer.Option(min=1)] = 5,
    refresh: Annotated[bool, typer.Option(help="ask the hub even when the cache already verifies")] = False,
) -> None:
    """Download MODEL into the node's HF cache once per cache domain, then verify it offline."""
    from infersweep.artifacts.download import DownloadError, download_model

    try:
        result = download_model(model, revision=revision, hf_home=hf_home, cache_domain=cache_domain,
                                pg_url=pg_url, token_conn_id=token_conn_id, endpoint=endpoint,
                                max_attempts=max_attempts, refresh=refresh)
    except DownloadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    _echo_json(result.to_json())


@engines_app.command("verify")
def verify(
    model: Annotated[str, typer.Argument(help="HF repo id or local path")],
    revision: Annotated[str | None, typer.Option()] = None,
    hf_home: Annotated[str | None, typer.Option("--hf-home")] = None,
) -> None:
    """Check the cache is complete for serving with HF_HUB_OFFLINE=1 (exit 1 when it is not)."""
    from infersweep.artifacts.download import IncompleteDownloadError, verify_offline

    try:
        result = verify_offline(model, revision=revision, hf_home=hf_home)
    except IncompleteDownloadError as exc:
        typer.echo(f"incomplete: {exc}", err=True)
        raise typer.Exit(1) from exc
    _echo_json(result.to_json())


@engines_app.command("reap")
def reap_cmd(
    active_run: Annotated[list[str] | None, typer.Option("--active-run", help="run ids to keep (repeatable); "
                                                         "every other infersweep container counts as ended")] = None,
    docker_url: Annotated[str | None, typer.Option(help="engine URL (else DOCKER_HOST)")] = None,
    node: Annotated[str | None, typer.Option(help="only containers labelled with this node")] = None,
    grace_s: Annotated[float, typer.Option(min=0)] = 10.0,
    yes: Annotated[bool, typer.Option("--yes", help="really remove (default: only list)")] = False,
) -> None:
    """List (or with --yes remove) infersweep containers whose run is not in --active-run."""
    import docker

    from infersweep.engines.reaper import reap

    keep = set(active_run or ())
    client = docker.DockerClient(base_url=docker_url, timeout=60) if docker_url else docker.from_env(timeout=60)
    try:
        done = reap(client, lambda run_id: run_id in keep, node=node, grace_s=grace_s, dry_run=not yes)
    finally:
        client.close()
    _echo_json([r.__dict__ for r in done])
    if not yes and done:
        typer.echo(f"{len(done)} container(s) would be removed; pass --yes to remove them", err=True)


@engines_app.command("gpu-sample")
def gpu_sample(
    container: Annotated[str | None, typer.Option(help="exec nvidia-smi in this container")] = None,
    docker_url: Annotated[str | None, typer.Option(help="engine URL (else DOCKER_HOST)")] = None,
    sim_url: Annotated[str | None, typer.Option(help="read a simulated engine's /metrics instead")] = None,
) -> None:
    """Read the GPUs once (host nvidia-smi, a container's, or the simulator's model) and print the samples."""
    from infersweep.telemetry.gpu import (
        NvidiaSmiSource,
        SimMetricsSource,
        TelemetrySampler,
        TelemetrySource,
    )

    source: TelemetrySource
    client = None
    if sim_url:
        source = SimMetricsSource(sim_url)
    elif container:
        import docker

        client = docker.DockerClient(base_url=docker_url, timeout=30) if docker_url else docker.from_env(timeout=30)
        source = NvidiaSmiSource.in_container(client, container)
    else:
        source = NvidiaSmiSource.local()
    try:
        _echo_json([s.to_json() for s in TelemetrySampler(source).sample_once()])
    finally:
        if client is not None:
            client.close()


def register(app: typer.Typer) -> None:
    """Attach `infersweep engines …` to the top-level app."""
    app.add_typer(engines_app, name="engines")
