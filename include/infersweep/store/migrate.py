"""Run the packaged alembic migrations programmatically (no alembic.ini needed)."""

from __future__ import annotations

import logging
import threading
from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from infersweep.store.db import get_engine, is_postgres, mask_url, resolve_url, write_transaction

log = logging.getLogger(__name__)

#: Postgres advisory-lock key serialising concurrent migrations (several workers starting at once).
_MIGRATION_LOCK_KEY = 0x1F5E_5707
_checked: set[str] = set()
_checked_lock = threading.Lock()


def alembic_config(url: str | None = None) -> Config:
    """An alembic Config pointing at the packaged script location; the URL travels as an attribute.

    (Passing it through `set_main_option` would need `%` escaping and could end up in alembic's logs.)
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("infersweep.store") / "migrations"))
    cfg.attributes["url"] = resolve_url(url)
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> str:
    """Migrate the results DB to `revision` (default head); returns the masked URL migrated."""
    cfg = alembic_config(url)
    engine = get_engine(cfg.attributes["url"])
    # One migrator at a time: an advisory lock on Postgres, SQLite's write lock (BEGIN IMMEDIATE) otherwise.
    with write_transaction(engine, exclusive=True) as conn:
        if is_postgres(conn):
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    log.info("results DB %s migrated to %s", mask_url(cfg.attributes["url"]), revision)
    return mask_url(cfg.attributes["url"])


def current_revision(engine: Engine) -> str | None:
    """The DB's alembic revision (None for an empty DB)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest packaged revision."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def ensure_schema(engine: Engine) -> None:
    """Migrate when the DB is behind; checked once per process and URL (the store calls it on first use)."""
    url = engine.url.render_as_string(hide_password=False)
    with _checked_lock:
        if url in _checked:
            return
        if current_revision(engine) != head_revision():
            upgrade(url)
        _checked.add(url)
