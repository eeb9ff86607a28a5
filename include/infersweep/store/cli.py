"""`infersweep db …`: migrate, inspect and flush the results database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy import Engine

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="SQLAlchemy URL (default: INFERSWEEP_DB_URL, Airflow conn infersweep_results, "
                               "./.infersweep/results.sqlite)"),
]


@contextmanager
def reading(url: str | None, *, command: str = "infersweep db", option: str = "--url") -> Iterator[Engine]:
    """A read-only engine for a command that only reads: a missing SQLite store is reported (path and how to
    create it) instead of created, and a store the query cannot read is one line, not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from infersweep.store.db import StoreConfigError, mask_url
    from infersweep.store.readonly import open_readonly, resolve_read_url

    try:
        yield open_readonly(url, option=option)
    except StoreConfigError as exc:
        typer.echo(f"{command}: {exc}", err=True)
        raise typer.Exit(2) from None
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        typer.echo(f"{command}: cannot read the results store {mask_url(resolve_read_url(url))}: {detail} "
                   "(is the URL right, and has `infersweep db upgrade` created the schema?)", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """Attach the `db` command group to the top-level app."""
    db = typer.Typer(name="db", help="Results database: migrations, summaries, spool flush.", no_args_is_help=True)

    @db.command("upgrade")
    def upgrade(url: UrlOpt = None, revision: str = typer.Option("head", help="target revision")) -> None:
        """Run the packaged alembic migrations."""
        from infersweep.store.db import StoreConfigError
        from infersweep.store.migrate import upgrade as do_upgrade

        try:
            masked = do_upgrade(url, revision)
        except StoreConfigError as exc:
            raise typer.BadParameter(str(exc), param_hint="--url") from None
        typer.echo(f"results DB {masked} is at {revision}")

    @db.command("current")
    def current(url: UrlOpt = None) -> None:
        """Print the DB's migration revision and the packaged head."""
        from infersweep.store.db import mask_url
        from infersweep.store.migrate import current_revision, head_revision
        from infersweep.store.readonly import resolve_read_url

        with reading(url) as engine:
            rev = current_revision(engine)
        typer.echo(f"{mask_url(resolve_read_url(url))}: revision {rev} (head {head_revision()})")

    @db.command("summary")
    def summary(url: UrlOpt = None, dag_id: str | None = typer.Option(None, "--dag-id"),
                run_id: str | None = typer.Option(None, "--run-id"), limit: int = 20) -> None:
        """Run summaries ("53/55 green") and their failure classes."""
        from infersweep.store.views import failure_breakdown, run_summary

        with reading(url) as engine:
            rows = run_summary(engine, dag_id=dag_id, run_id=run_id, limit=limit)
            breakdowns = [failure_breakdown(engine, dag_id=r["dag_id"], run_id=r["run_id"]) for r in rows]
        if not rows:
            typer.echo("no runs recorded")
            return
        for r, failures in zip(rows, breakdowns, strict=True):
            typer.echo(f"{r['dag_id']}  {r['run_id']}  {r['trigger_kind']:<9} {r['status']:<8} {r['label']}"
                       f"  groups {r['groups_ok']}/{r['groups_total']}  evals {r['evals_passed']}/{r['evals_total']}")
            for f in failures:
                typer.echo(f"    {f['source']:<8} {f['failure_kind']:<32} {f['n']}")

    @db.command("flush")
    def flush(url: UrlOpt = None, timeout: float = typer.Option(60.0, help="seconds to keep retrying")) -> None:
        """Deliver spooled results to the DB (exit 1 if some remain)."""
        from infersweep.store.api import ResultStore

        store = ResultStore(dag_id="cli", run_id="flush", url=url)
        result = store.flush(timeout_s=timeout)
        typer.echo(f"applied {result.applied}, rejected {result.rejected}, remaining {result.remaining}")
        if not result.complete:
            raise typer.Exit(1)

    @db.command("leases")
    def leases(url: UrlOpt = None, history: bool = typer.Option(False, help="all leases, oldest first")) -> None:
        """Nodes (drained or not) and their leases."""
        from sqlalchemy import select

        from infersweep.store.leases import active_leases, lease_history
        from infersweep.store.models import NodeRow

        with reading(url) as engine:
            with engine.connect() as conn:
                nodes = conn.execute(select(NodeRow.name, NodeRow.runner, NodeRow.enabled)
                                     .order_by(NodeRow.name)).all()
            held = {x.node: x for x in active_leases(engine)}
            past = lease_history(engine) if history else []
        for name, runner, enabled in nodes:
            lease = held.get(name)
            state = f"held by {lease.holder} until {lease.expires_at:%H:%M:%S}" if lease else "free"
            typer.echo(f"{name:<24} {runner:<12} {'enabled' if enabled else 'DRAINED':<8} {state}")
        if history:
            for x in past:
                typer.echo(f"  {x.node:<24} {x.acquired_at:%Y-%m-%d %H:%M:%S} -> "
                           f"{x.released_at or '(active)'} {x.release_reason or ''} {x.holder}")

    @db.command("drain")
    def drain(name: str, url: UrlOpt = None,
              undo: bool = typer.Option(False, "--undo", help="return the node to service")) -> None:
        """Stop giving new leases on a node (running servers keep theirs)."""
        from infersweep.store.db import get_engine
        from infersweep.store.leases import set_node_enabled

        if not set_node_enabled(get_engine(url), name, enabled=undo):
            raise typer.BadParameter(f"node {name!r} is not registered (it is added on its first lease)")
        typer.echo(f"node {name} {'returned to service' if undo else 'drained'}")

    app.add_typer(db)
