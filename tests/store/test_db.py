"""URL resolution, masking, connection settings and migrations on both dialects."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.store.db import StoreConfigError, get_engine, mask_url, normalize_url, resolve_url
from infersweep.store.migrate import current_revision, head_revision
from infersweep.store.models import Base

VIEWS = {"v_latest_results", "v_run_summary", "v_failure_breakdown"}


def test_mask_url_hides_password() -> None:
    masked = mask_url("postgresql+psycopg://bench:s3cr3t-pw@db:5432/results")
    assert "s3cr3t-pw" not in masked and "***" in masked


def test_postgres_scheme_maps_to_psycopg3() -> None:
    assert normalize_url("postgres://u@h/db").startswith("postgresql+psycopg://")


def test_unsupported_backend_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(StoreConfigError, match="not supported") as err:
        normalize_url("mysql://root:hunter2-secret@h/db")
    assert "hunter2-secret" not in str(err.value)


def test_resolution_order_env_then_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INFERSWEEP_DB_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_INFERSWEEP_RESULTS", raising=False)
    assert resolve_url() == "sqlite:///.infersweep/results.sqlite"
    assert (tmp_path / ".infersweep").is_dir()
    monkeypatch.setenv("INFERSWEEP_DB_URL", "sqlite:////tmp/x.sqlite")
    assert resolve_url() == "sqlite:////tmp/x.sqlite"
    assert resolve_url("sqlite:////tmp/explicit.sqlite") == "sqlite:////tmp/explicit.sqlite"


def test_airflow_connection_is_used_when_defined(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("airflow.sdk")
    monkeypatch.delenv("INFERSWEEP_DB_URL", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_INFERSWEEP_RESULTS", "postgres://bench:pw-from-airflow@db.example:5433/results")
    url = resolve_url()
    assert url.startswith("postgresql+psycopg://bench:")
    assert "db.example:5433/results" in url
    assert "pw-from-airflow" not in mask_url(url)


def test_sqlite_connections_use_wal_and_busy_timeout(tmp_path: Path) -> None:
    engine = get_engine(f"sqlite:///{tmp_path / 'w.sqlite'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_postgres_connections_carry_a_statement_timeout(pg_url: str) -> None:
    with get_engine(pg_url).connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() not in {"0", None}


def test_upgrade_creates_tables_views_and_matches_models(engine) -> None:
    assert current_revision(engine) == head_revision()
    insp = inspect(engine)
    tables = set(insp.get_table_names())
    assert {"runs", "serve_groups", "attempts", "benchmark_results", "eval_results", "eval_samples",
            "server_logs", "nodes", "node_leases"} <= tables
    assert VIEWS <= set(insp.get_view_names())
    # The migration and the ORM models describe the same schema (no drift).
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    assert diffs == []


def test_cli_db_upgrade_and_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    runner = CliRunner()
    result = runner.invoke(app, ["db", "upgrade", "--url", url])
    assert result.exit_code == 0, result.output
    assert "is at head" in result.output
    result = runner.invoke(app, ["db", "current", "--url", url])
    assert result.exit_code == 0 and f"revision {head_revision()}" in result.output


def test_migrations_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    from alembic import command

    from infersweep.store.migrate import alembic_config, upgrade

    url = f"sqlite:///{tmp_path / 'roundtrip.sqlite'}"
    upgrade(url)
    engine = get_engine(url)
    cfg = alembic_config(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert current_revision(engine) is None and "runs" not in inspect(engine).get_table_names()
    upgrade(url)
    assert current_revision(engine) == head_revision()
    assert VIEWS <= set(inspect(engine).get_view_names())
