"""Shared fixtures: paths to ../shared, and throwaway databases (Postgres when reachable, SQLite always)."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INFERSWEEP_SHARED", ROOT.parent / "shared"))
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
def gsm8k_dir() -> Path:
    """`../shared/data/gsm8k` (real GSM8K jsonl); skips when absent."""
    return _require(SHARED / "data" / "gsm8k" / "test.jsonl", "GSM8K data").parent


def _pg_reachable() -> bool:
    try:
        with socket.create_connection((PG_HOST, PG_PORT), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh Postgres database for this test session, dropped afterwards. Skips when Postgres is down."""
    if not _pg_reachable():
        pytest.skip(f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}")
    import psycopg

    name = f"infersweep_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = f"host={PG_HOST} port={PG_PORT} user=postgres dbname=postgres connect_timeout=5"
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT} refused a test database: {exc}")
    yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.sqlite'}"
