"""Writing ReportPoints into a real results store through the store's own record appliers."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

from sqlalchemy import Engine, text

from infersweep.report.data import ReportPoint
from infersweep.store.db import dispose_engines, make_engine, write_transaction
from infersweep.store.migrate import upgrade
from infersweep.store.models import Base
from infersweep.store.records import apply_benchmark, apply_group, apply_run

_METRICS = ("tput_per_gpu", "output_tput_per_gpu", "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms",
            "p99_tpot_ms", "median_intvty", "median_e2el_ms", "p99_e2el_ms", "num_completed", "num_failed")


@cache
def _sqlite_template() -> Path:
    """A migrated empty SQLite store, made once per session and copied per test (migrating is slow)."""
    path = Path(tempfile.mkdtemp(prefix="infersweep-report-tpl-")) / "results.sqlite"
    upgrade(f"sqlite:///{path}")
    dispose_engines()  # closes the connection, which checkpoints the WAL into the file we copy
    return path


@cache
def _migrate_once(url: str) -> None:
    upgrade(url)


def store_engine(url: str) -> Engine:
    """An engine on an empty, fully migrated store (tables and the store's views)."""
    if url.startswith("sqlite:///"):
        shutil.copyfile(_sqlite_template(), url.removeprefix("sqlite:///"))
        return make_engine(url)
    _migrate_once(url)
    engine = make_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:  # one Postgres DB per session: each test starts from empty tables
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return engine


def seed(engine: Engine, points: Iterable[ReportPoint], *, started: datetime | None = None) -> None:
    """Store points as runs / serve groups / benchmark results (idempotent upserts)."""
    started = started or datetime(2026, 11, 20, tzinfo=UTC)
    with write_transaction(engine) as conn:
        for p in points:
            run_start = p.run_started_at or started
            apply_run(conn, {"dag_id": p.dag_id, "run_id": p.run_id, "trigger_kind": "test", "engine": p.engine,
                             "image_tag": p.image, "image_digest": p.image_digest, "config_key": p.config_key,
                             "started_at": run_start, "status": "success"})
            group_id = f"{p.config_key}-{p.topology}-{p.spec_label}-{p.isl}-{p.osl}"
            apply_group(conn, {"dag_id": p.dag_id, "run_id": p.run_id, "group_id": group_id,
                               "config_key": p.config_key, "model": p.model, "model_prefix": p.model_prefix,
                               "precision": p.precision, "framework": p.framework, "runner": p.runner,
                               "isl": p.isl, "osl": p.osl, "tp": p.tp, "ep": p.ep, "dp_attn": p.dp_attn, "pp": p.pp,
                               "spec_decoding": p.spec_decoding, "image": p.image, "image_digest": p.image_digest,
                               "engine": p.engine, "recipe_fingerprint": p.recipe_fingerprint})
            data = {"dag_id": p.dag_id, "run_id": p.run_id, "group_id": group_id, "isl": p.isl, "osl": p.osl,
                    "conc": p.conc, "status": p.status, "failure_kind": p.failure_kind, "error": p.error,
                    "client_bound": p.client_bound,
                    "measured_at": p.measured_at or run_start + timedelta(seconds=p.conc)}
            data.update({m: getattr(p, m) for m in _METRICS})
            apply_benchmark(conn, data)
