"""Alembic environment for the results DB. The URL comes from the programmatic Config (never from a file)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from infersweep.store.db import get_engine
from infersweep.store.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need table rebuilds
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = get_engine(config.attributes.get("url"))
    with engine.connect() as conn:
        _run(conn)


if context.is_offline_mode():
    raise SystemExit("infersweep migrations run online only (use `infersweep db upgrade`)")
run_migrations_online()
