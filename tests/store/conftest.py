"""Store fixtures: every store test runs on SQLite and on real Postgres (skipped when PG is down)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine

from infersweep.store.api import ResultStore
from infersweep.store.db import get_engine
from infersweep.store.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated results DB: a fresh SQLite file, or the session's Postgres database."""
    url = f"sqlite:///{tmp_path / 'results.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    upgrade(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Engine:
    return get_engine(db_url)


@pytest.fixture
def dag_id() -> str:
    """Unique per test: the Postgres DB is shared by the whole session."""
    return f"sweep-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def make_store(db_url: str, tmp_path: Path, dag_id: str):
    def make(run_id: str = "manual__1", *, dag: str | None = None) -> ResultStore:
        return ResultStore(dag_id=dag or dag_id, run_id=run_id, url=db_url, spool_path=tmp_path / "spool.jsonl")

    return make
