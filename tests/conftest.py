"""Shared fixtures: paths to ../shared, and throwaway databases (Postgres when reachable, SQLite always)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INFERSWEEP_SHARED", ROOT.parent / "shared"))
# The product reads GSM8K from the hub or a configured local copy; the tests (and the DAG runs they start,
# which inherit the environment) use the shared copy when there is one.
if (SHARED / "data" / "gsm8k" / "test.jsonl").exists():
    os.environ.setdefault("INFERSWEEP_GSM8K_DIR", str((SHARED / "data" / "gsm8k").resolve()))
PG_HOST, PG_PORT = "127.0.0.1", 5432


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(f"{what} not found at {path} (the shared/ reference folder is absent on this machine)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def inferencex_dir() -> Path:
    """`../shared/fixtures/inferencex` (real InferenceX master configs); skips when absent."""
    return _require(SHARED / "fixtures" / "inferencex", "InferenceX fixtures")


@pytest.fixture(scope="session")
def inferencex_today_dir() -> Path:
    """`../shared/fixtures/inferencex-843c6254f` (InferenceX main, 2026-08-21); skips when absent."""
    return _require(SHARED / "fixtures" / "inferencex-843c6254f", "InferenceX 843c6254f fixtures")


@pytest.fixture(scope="session")
def inferencex_reference_today() -> Path:
    """`../shared/reference/inferencex-843c6254f` (upstream's generator and post-processing); skips when absent."""
    return _require(SHARED / "reference" / "inferencex-843c6254f", "InferenceX 843c6254f reference scripts")


@pytest.fixture(scope="session")
def gsm8k_dir() -> Path:
    """`../shared/data/gsm8k` (real GSM8K jsonl); skips when absent."""
    return _require(SHARED / "data" / "gsm8k" / "test.jsonl", "GSM8K data").parent


def _pg_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1.0):
            return True
    except OSError:
        return False


ADMIN_DSN = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres connect_timeout=5"


@contextlib.contextmanager
def fresh_pg_database(prefix: str = "infersweep_test") -> Iterator[str]:
    """Create `<prefix>_<random>` on the machine's Postgres, yield its URL, drop it (FORCE) afterwards."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        from infersweep.store.db import dispose_engines

        dispose_engines()
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh_pg_url(prefix: str) -> Iterator[str]:
    if not _pg_reachable():
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}")
    import psycopg

    try:
        with fresh_pg_database(prefix) as url:
            yield url
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT} refused a test database: {exc}")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh Postgres database shared by this test session, dropped afterwards. Skips when Postgres is down."""
    yield from _fresh_pg_url("infersweep_test")


@pytest.fixture(scope="module")
def module_pg_url() -> Iterator[str]:
    """A fresh Postgres database for one test module (for tests that count every row). Skips when Postgres is
    down."""
    yield from _fresh_pg_url("infersweep_mod")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.sqlite'}"
