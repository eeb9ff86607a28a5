"""Fixtures for the reliability suite: a throwaway Postgres results database per test module (never shared)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import _fresh_pg_url, fresh_pg_database

__all__ = ["fresh_pg_database", "rel_pg_url"]


@pytest.fixture(scope="module")
def rel_pg_url() -> Iterator[str]:
    """A fresh results database for one test module. Skips when Postgres is down."""
    yield from _fresh_pg_url("infersweep_rel")
