"""Report fixtures shared by the cost and band tests."""

from __future__ import annotations

import pytest

from .seed import store_engine


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    """A migrated results DB (SQLite file, or the session's Postgres) seeded by the test."""
    url = f"sqlite:///{tmp_path / 'results.sqlite'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    eng = store_engine(url)
    yield eng
    eng.dispose()
