"""Read-only commands never create anything (issue 16): `report`, `report compare`, `db current|summary|leases`
on a SQLite store that does not exist say so and exit 2; on one that exists they read it without writing it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.report.json_source import dump_points

from .factories import pt
from .seed import seed, store_engine

runner = CliRunner()


@pytest.fixture
def no_store_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty working folder and no store configured anywhere: the default store would be created here."""
    for var in ("INFERSWEEP_DB_URL", "AIRFLOW_CTX_DAG_ID", "AIRFLOW_CONN_INFERSWEEP_RESULTS"):
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def missing_message(url: str, path: str, option: str, default: bool = False) -> str:
    note = f" (the default store: no {option} given and INFERSWEEP_DB_URL unset)" if default else ""
    return (f"cannot read the results store {url}: {path} does not exist{note}; a read-only command creates "
            "nothing. Run a sweep to record results, or create an empty store with "
            f"`infersweep db upgrade --url {url}`, or pass {option} with an existing store's URL.\n")


def test_report_on_a_missing_sqlite_file_creates_nothing(no_store_env):
    res = runner.invoke(app, ["report", "--db", "sqlite:///missing/dir/x.sqlite", "--out", "r.html"])
    assert res.exit_code == 2
    assert res.stderr == "infersweep report: " + missing_message(
        "sqlite:///missing/dir/x.sqlite", "missing/dir/x.sqlite", "--db")
    assert list(no_store_env.iterdir()) == []


def test_report_without_db_in_an_empty_folder_creates_nothing(no_store_env):
    res = runner.invoke(app, ["report", "--out", "r.html"])
    assert res.exit_code == 2
    assert res.stderr == "infersweep report: " + missing_message(
        "sqlite:///.infersweep/results.sqlite", ".infersweep/results.sqlite", "--db", default=True)
    assert list(no_store_env.iterdir()) == []


def test_compare_on_a_missing_store_creates_nothing_and_files_need_no_store(no_store_env, tmp_path):
    res = runner.invoke(app, ["report", "compare", "--base", "img:a", "--head", "cfg/r1"])
    assert res.exit_code == 2 and "cannot read the results store sqlite:///.infersweep/results.sqlite" in res.stderr
    base, head = tmp_path / "base.json", tmp_path / "head.json"
    dump_points([pt(8, tput=1000.0)], base)
    res = runner.invoke(app, ["report", "compare", "--base", str(base), "--head", str(head)])
    assert res.exit_code == 2 and "results store" in res.stderr  # a side that is not a file needs the store
    dump_points([pt(8, run="r2", tput=1000.0)], head)
    res = runner.invoke(app, ["report", "compare", "--base", str(base), "--head", str(head)])
    assert res.exit_code == 0, res.output  # two result files: no store needed, none made
    assert list(no_store_env.iterdir()) == []


@pytest.mark.parametrize("command", [["db", "current"], ["db", "summary"], ["db", "leases"]])
def test_db_listing_commands_on_a_missing_store_create_nothing(no_store_env, command):
    res = runner.invoke(app, [*command, "--url", "sqlite:///missing/dir/x.sqlite"])
    assert res.exit_code == 2
    assert res.stderr == "infersweep db: " + missing_message(
        "sqlite:///missing/dir/x.sqlite", "missing/dir/x.sqlite", "--url")
    res = runner.invoke(app, command)
    assert res.exit_code == 2 and "(the default store: no --url given and INFERSWEEP_DB_URL unset)" in res.stderr
    assert list(no_store_env.iterdir()) == []


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_existing_store_is_read_without_being_written(tmp_path, sqlite_url):
    engine = store_engine(sqlite_url)
    seed(engine, [pt(8, run="r1"), pt(16, run="r1", status="failed")])
    engine.dispose()  # the writer's last connection checkpoints the WAL into the file
    db = Path(sqlite_url.removeprefix("sqlite:///"))
    before = _digest(db)
    out = tmp_path / "r.html"
    res = runner.invoke(app, ["report", "--db", sqlite_url, "--run", "cfg/r1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "1/2 points green" in res.output and out.exists()
    for command in (["db", "current"], ["db", "summary"], ["db", "leases"]):
        res = runner.invoke(app, [*command, "--url", sqlite_url])
        assert res.exit_code == 0, res.output
    assert "1/2 green" in runner.invoke(app, ["db", "summary", "--url", sqlite_url]).output
    assert _digest(db) == before


def test_an_existing_file_without_schema_stays_empty(tmp_path):
    db = tmp_path / "empty.sqlite"
    db.touch()
    res = runner.invoke(app, ["report", "--db", f"sqlite:///{db}", "--out", str(tmp_path / "x.html")])
    assert res.exit_code == 2
    assert f"cannot read the results store sqlite:///{db}: no such table" in res.stderr
    assert "infersweep db upgrade" in res.stderr
    res = runner.invoke(app, ["db", "summary", "--url", f"sqlite:///{db}"])
    assert res.exit_code == 2 and "no such table" in res.stderr and "Traceback" not in res.output
    assert db.stat().st_size == 0 and not (tmp_path / "x.html").exists()
