"""Where the results database is and how we connect to it (Postgres or SQLite, one code path).

Resolution order for the URL: an explicit argument, `INFERSWEEP_DB_URL`, the Airflow connection
`infersweep_results` (only inside an Airflow task, looked up lazily), then the embedded default SQLite file
`./.infersweep/results.sqlite`. URLs are masked (`***` for the password) in every log line and error.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url

from infersweep.faults.errors import InfersweepError

log = logging.getLogger(__name__)

ENV_URL = "INFERSWEEP_DB_URL"
AIRFLOW_CONN_ID = "infersweep_results"
DEFAULT_SQLITE_PATH = Path(".infersweep") / "results.sqlite"

#: Timeouts every connection carries (a hung DB must never hang a GPU-holding task forever).
CONNECT_TIMEOUT_S = int(os.environ.get("INFERSWEEP_DB_CONNECT_TIMEOUT_S", "10"))
STATEMENT_TIMEOUT_MS = int(os.environ.get("INFERSWEEP_DB_STATEMENT_TIMEOUT_MS", "60000"))
SQLITE_BUSY_TIMEOUT_MS = int(os.environ.get("INFERSWEEP_DB_BUSY_TIMEOUT_MS", "30000"))
#: Shared by the write and the read-only engines' connect hooks.
SQLITE_BUSY_TIMEOUT_PRAGMA = f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


class StoreConfigError(InfersweepError, ValueError):
    """The results DB URL is unusable (bad scheme, unreadable Airflow connection, ...)."""

    kind = "config_error"
    transient = False


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by `***`; safe for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL may still contain a secret: show only its scheme
        text = str(url)
        return text.split("://", 1)[0] + "://***" if "://" in text else "***"


def _airflow_connection_url() -> str | None:
    """The `infersweep_results` Airflow connection as a SQLAlchemy URL, or None outside Airflow."""
    # Only inside a running task (the task runner exports AIRFLOW_CTX_*) or when the connection is
    # given through the environment: elsewhere the lookup would need the metadata DB.
    if "AIRFLOW_CTX_DAG_ID" not in os.environ and f"AIRFLOW_CONN_{AIRFLOW_CONN_ID.upper()}" not in os.environ:
        return None
    try:
        from airflow.sdk import Connection
    except ImportError:
        return None
    try:
        conn = Connection.get(AIRFLOW_CONN_ID)
    except Exception as exc:  # AirflowNotFoundException and supervisor errors alike: fall back
        log.debug("Airflow connection %s unavailable (%s); using the next source", AIRFLOW_CONN_ID, type(exc).__name__)
        return None
    if conn is None:
        return None
    kind = (conn.conn_type or "").lower()
    if kind in {"postgres", "postgresql"}:
        return URL.create(
            "postgresql+psycopg", username=conn.login or None, password=conn.password or None,
            host=conn.host or None, port=conn.port or None, database=conn.schema or None,
        ).render_as_string(hide_password=False)
    if kind == "sqlite":
        return f"sqlite:///{conn.host or conn.schema}"
    raise StoreConfigError(
        f"Airflow connection {AIRFLOW_CONN_ID!r} has type {conn.conn_type!r}; use 'postgres' or 'sqlite'"
    )


def resolve_url(url: str | None = None) -> str:
    """The results DB URL (see module docstring for the order); never logged unmasked."""
    chosen = url or os.environ.get(ENV_URL) or _airflow_connection_url()
    if not chosen:
        DEFAULT_SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
        chosen = f"sqlite:///{DEFAULT_SQLITE_PATH}"
    return normalize_url(chosen)


def normalize_url(url: str) -> str:
    """Map `postgres://` / `postgresql://` to the psycopg 3 driver we ship; validate the scheme."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StoreConfigError(f"results DB URL {mask_url(url)} is not a valid SQLAlchemy URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend in {"postgres", "postgresql"}:
        if parsed.drivername in {"postgres", "postgresql"}:
            parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend != "sqlite":
        raise StoreConfigError(
            f"results DB URL {mask_url(url)}: backend {backend!r} is not supported; "
            "use postgresql+psycopg://… or sqlite:///path"
        )
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Autocommit at the driver level so SQLAlchemy's "begin" hook decides how a transaction starts
    # (BEGIN IMMEDIATE for lease transactions); WAL lets readers run beside the single writer.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(SQLITE_BUSY_TIMEOUT_PRAGMA)
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def make_engine(url: str) -> Engine:
    """A new Engine with timeouts on every connection; prefer `get_engine` (cached per URL)."""
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        from infersweep.store.readonly import is_readonly_url, is_uri_database, sqlite_readonly_pragmas

        # a `file:` URI (the read-only opener's) is not a path: there is no folder to create
        if parsed.database and parsed.database != ":memory:" and not is_uri_database(parsed):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        event.listen(engine, "connect", sqlite_readonly_pragmas if is_readonly_url(parsed) else _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        # pre-ping: a pooled connection that died with a Postgres restart is replaced, not used.
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        pool_timeout=CONNECT_TIMEOUT_S,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={STATEMENT_TIMEOUT_MS}",
            "application_name": "infersweep",
        },
    )


def get_engine(url: str | None = None) -> Engine:
    """The process-wide Engine for the resolved URL (created once; thread-safe)."""
    resolved = resolve_url(url)
    with _engines_lock:
        engine = _engines.get(resolved)
        if engine is None:
            engine = make_engine(resolved)
            _engines[resolved] = engine
            log.info("results DB: %s", mask_url(resolved))
        return engine


def dispose_engines() -> None:
    """Close every cached Engine (tests, and after fork in long-lived workers)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def is_postgres(engine: Engine | Connection) -> bool:
    """True when the bind talks to PostgreSQL."""
    return engine.dialect.name == "postgresql"


@contextmanager
def write_transaction(engine: Engine, *, exclusive: bool = False) -> Iterator[Connection]:
    """A transaction; `exclusive=True` takes SQLite's write lock up front (BEGIN IMMEDIATE).

    On SQLite a deferred transaction that reads then writes can fail with "database is locked" when
    another writer got in between; IMMEDIATE makes such read-modify-write transactions serialize cleanly.
    Postgres uses row locks instead, so the flag changes nothing there.
    """
    bind = engine.execution_options(sqlite_begin="IMMEDIATE") if exclusive and not is_postgres(engine) else engine
    with bind.begin() as conn:
        yield conn
