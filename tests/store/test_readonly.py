"""The read-only store opener: SQLite files must exist and are opened `mode=ro`; nothing is ever created."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from infersweep.store.db import StoreConfigError, dispose_engines, get_engine
from infersweep.store.readonly import (
    StoreNotFound,
    is_readonly_url,
    open_readonly,
    readonly_url,
    resolve_read_url,
)


@pytest.fixture
def in_empty_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("INFERSWEEP_DB_URL", "AIRFLOW_CTX_DAG_ID", "AIRFLOW_CONN_INFERSWEEP_RESULTS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _make_db(path: Path) -> str:
    url = f"sqlite:///{path}"
    with get_engine(url).begin() as conn:  # the write path, as `db upgrade` or a sweep would
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    dispose_engines()
    return url


@pytest.mark.parametrize("name", ["results.sqlite", "odd name #1 & ü.sqlite"])
def test_existing_file_is_opened_read_only(tmp_path, name):
    url = _make_db(tmp_path / name)
    ro = readonly_url(url)
    assert is_readonly_url(ro) and not is_readonly_url(url)
    engine = open_readonly(url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar_one() == 1
    with pytest.raises(OperationalError, match="readonly database"), engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (2)"))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(name)) == []  # no "file:" folder
    dispose_engines()


def test_missing_file_raises_and_creates_nothing(in_empty_folder):
    with pytest.raises(StoreNotFound, match=r"missing/x\.sqlite does not exist; a read-only command") as err:
        readonly_url("sqlite:///missing/x.sqlite")
    assert isinstance(err.value, StoreConfigError) and err.value.kind == "config_error" and not err.value.transient
    with pytest.raises(StoreNotFound, match=r"\(the default store: no --url given and INFERSWEEP_DB_URL unset\)"):
        open_readonly(None, option="--url")
    assert resolve_read_url(None) == "sqlite:///.infersweep/results.sqlite"
    (in_empty_folder / "dir.sqlite").mkdir()
    with pytest.raises(StoreNotFound, match="is a folder, not a SQLite file"):
        readonly_url("sqlite:///dir.sqlite")
    assert [p.name for p in in_empty_folder.iterdir()] == ["dir.sqlite"]


def test_urls_with_nothing_on_disk_pass_through(monkeypatch):
    monkeypatch.delenv("INFERSWEEP_DB_URL", raising=False)
    assert readonly_url("sqlite://") == "sqlite://"
    assert readonly_url("postgres://u:pw@db.example:5432/results") == "postgresql+psycopg://u:pw@db.example:5432/results"
    monkeypatch.setenv("INFERSWEEP_DB_URL", "postgresql+psycopg://u@h/r")
    assert readonly_url(None) == "postgresql+psycopg://u@h/r"
