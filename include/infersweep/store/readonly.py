"""Opening the results store for reading only: `infersweep report`, `report compare`, `db current|summary|leases`.

A read must never create anything, but the write paths do on purpose: `resolve_url` creates the default
`.infersweep/` folder, `make_engine` the SQLite file's folder, and SQLite the file itself on first connect. Here
a SQLite store that does not exist is an error naming the path and how results get there, and an existing one
is opened through a `mode=ro` URI, so the database file is never written (SQLite may still add the `-wal`/`-shm`
companions a reader of a WAL database needs, next to the file). Postgres URLs pass through unchanged: connecting
to a server creates nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url

from infersweep.store.db import (
    DEFAULT_SQLITE_PATH,
    ENV_URL,
    SQLITE_BUSY_TIMEOUT_PRAGMA,
    StoreConfigError,
    _airflow_connection_url,
    get_engine,
    mask_url,
    normalize_url,
)


class StoreNotFound(StoreConfigError):
    """A read-only command was pointed at a SQLite results store that does not exist."""

    hint = "record results with a sweep, or create an empty store with `infersweep db upgrade`"


def resolve_read_url(url: str | None = None) -> str:
    """The store URL `resolve_url` would pick (argument, `INFERSWEEP_DB_URL`, the Airflow connection, the
    default SQLite file), without creating the default file's folder."""
    chosen = url or os.environ.get(ENV_URL) or _airflow_connection_url()
    return normalize_url(chosen or f"sqlite:///{DEFAULT_SQLITE_PATH}")


def is_uri_database(url: str | URL) -> bool:
    """True for a SQLite URL whose database is a `file:` URI (`?uri=true`), not a path."""
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and str(parsed.query.get("uri", "")).lower() in {"true", "1"}


def is_readonly_url(url: str | URL) -> bool:
    """True for the read-only SQLite URLs :func:`readonly_url` makes (`mode=ro` URIs)."""
    return is_uri_database(url) and make_url(url).query.get("mode") == "ro"


def readonly_url(url: str | None = None, *, option: str = "--db") -> str:
    """The URL to read the store from: a SQLite file must exist and is opened read-only; other URLs as resolved.

    `option` is the command's URL option, for the message. Raises :class:`StoreNotFound` naming the path
    when the file does not exist (nothing is created)."""
    resolved = resolve_read_url(url)
    parsed = make_url(resolved)
    db = parsed.database
    if parsed.get_backend_name() != "sqlite" or not db or db == ":memory:" or is_uri_database(parsed):
        return resolved  # Postgres, an in-memory store, or a URI the caller wrote: nothing to create or check
    path = Path(db)
    if not path.is_file():
        default = "" if url or os.environ.get(ENV_URL) else (
            f" (the default store: no {option} given and {ENV_URL} unset)")
        what = "is a folder, not a SQLite file" if path.is_dir() else "does not exist"
        raise StoreNotFound(
            f"cannot read the results store {mask_url(resolved)}: {path} {what}{default}; a read-only command "
            "creates nothing. Run a sweep to record results, or create an empty store with "
            f"`infersweep db upgrade --url {mask_url(resolved)}`, or pass {option} with an existing store's URL."
        )
    # %-escape the path: SQLite reads `?`, `#` and `%` in a URI filename as syntax
    database = "file:" + quote(str(path.resolve()), safe="/")
    return URL.create("sqlite", database=database, query={"mode": "ro", "uri": "true"}).render_as_string()


def sqlite_readonly_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Connect hook of read-only SQLite engines: the write engines' settings minus `journal_mode=WAL` and
    `synchronous`, which would write (and fail on a `mode=ro` connection to a rollback-journal file)."""
    dbapi_conn.isolation_level = None  # as the write engines: SQLAlchemy's "begin" hook starts transactions
    cur = dbapi_conn.cursor()
    cur.execute(SQLITE_BUSY_TIMEOUT_PRAGMA)
    cur.execute("PRAGMA query_only=ON")
    cur.close()


def open_readonly(url: str | None = None, *, option: str = "--db") -> Engine:
    """An Engine that only reads the store (see :func:`readonly_url`); cached like `get_engine`."""
    return get_engine(readonly_url(url, option=option))


__all__ = ["StoreNotFound", "is_readonly_url", "is_uri_database", "open_readonly", "readonly_url", "resolve_read_url",
           "sqlite_readonly_pragmas"]


def display_url(url: str) -> str:
    """The store's address as the user gave it: a read-only SQLite URI shows as its plain `sqlite:///path`."""
    if not is_readonly_url(url):
        return url
    from urllib.parse import unquote

    database = make_url(url).database or ""
    return f"sqlite:///{unquote(database.removeprefix('file:'))}"
