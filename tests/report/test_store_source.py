"""The report's DB adapter on a real store: SQLite always, Postgres when reachable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from infersweep.report import store_source as src
from infersweep.report.sample import sample_points

from .factories import pt
from .seed import seed, store_engine


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    else:
        base = request.getfixturevalue("pg_url")
        url = base
    eng = store_engine(url)
    yield eng
    eng.dispose()


def t(day: int) -> datetime:
    return datetime(2026, 11, day, 2, 0, tzinfo=UTC)


def test_round_trip_keeps_identity_metrics_and_failures(engine):
    points = sample_points(seq_lens=((1024, 1024),))
    seed(engine, points)
    loaded = src.load_runs(engine, ["llama70b-sample/manual__2026-11-27T02:00:00+00:00"])
    assert len(loaded) == len(points)
    by_key = {p.point_key: p for p in loaded}
    for p in points:
        got = by_key[p.point_key]
        assert got.status == p.status and got.failure_kind == p.failure_kind
        assert got.tput_per_gpu == pytest.approx(p.tput_per_gpu) if p.ok else got.tput_per_gpu is None
        assert got.recipe_fingerprint == p.recipe_fingerprint and got.image == p.image
        assert got.engine == "sim" and got.simulated
    assert sum(not p.ok for p in loaded) == 1
    assert loaded[0].run_started_at is not None and loaded[0].run_started_at.tzinfo is not None


def test_selectors_run_id_dag_run_and_image(engine):
    seed(engine, [pt(8, run="r1", image="img:a", run_started_at=t(1)), pt(8, run="r2", image="img:b", run_started_at=t(2)),
                  pt(8, run="r1", dag_id="other", config_key="other", image="img:a", run_started_at=t(1))])
    assert len(src.load_selector(engine, "r1")) == 2  # every DAG's run r1
    assert len(src.load_selector(engine, "cfg/r1")) == 1
    assert {p.run_id for p in src.load_selector(engine, "img:b")} == {"r2"}
    with pytest.raises(src.SelectorNotFound, match="nope"):
        src.load_selector(engine, "nope")
    with pytest.raises(src.SelectorNotFound):
        src.load_runs(engine, ["cfg/nope"])


def test_latest_run_per_dag(engine):
    seed(engine, [pt(8, run="old", run_started_at=t(1)), pt(8, run="new", run_started_at=t(3)),
                  pt(8, run="x", dag_id="other", config_key="other", run_started_at=t(2))])
    assert {(r.dag_id, r.run_id) for r in src.latest_runs(engine)} == {("cfg", "new"), ("other", "x")}
    assert {p.run_id for p in src.load_latest(engine, ["cfg"])} == {"new"}


def test_history_excludes_compared_runs_and_failures(engine):
    seed(engine, [pt(8, run=f"h{i}", run_started_at=t(i + 1), tput=1000 + i) for i in range(5)]
         + [pt(8, run="bad", run_started_at=t(9), status="failed"), pt(16, run="h0", run_started_at=t(1))])
    head = [pt(8, run="h4")]
    hist = src.load_history(engine, head, exclude={("cfg", "h4")})
    assert sorted(p.run_id for p in hist) == ["h0", "h1", "h2", "h3"]
    assert src.load_history(engine, head, per_point=2, exclude=set())[0].run_id == "h4"


def test_previous_image_run_skips_same_image_and_all_failed_runs(engine):
    seed(engine, [
        pt(8, run="d1", image="img:1", run_started_at=t(1)),
        pt(8, run="d2", image="img:2", run_started_at=t(2), status="failed"),  # no green point
        pt(8, run="d3", image="img:3", run_started_at=t(3)),
        pt(8, run="d4", image="img:3", run_started_at=t(4)),  # same image as head
        pt(8, run="d5", image="img:3", run_started_at=t(5)),
    ])
    prev = src.previous_image_run(engine, "cfg", "d5")
    assert prev is not None and prev.run_id == "d1"
    assert src.previous_image_run(engine, "cfg", "d1") is None
    with pytest.raises(src.SelectorNotFound):
        src.previous_image_run(engine, "cfg", "missing")


def test_run_summaries_count_green_and_failures_by_class(engine):
    seed(engine, [pt(8, run="r1", run_started_at=t(1)), pt(16, run="r1", status="failed", failure_kind="kv_cache_oom", run_started_at=t(1)),
                  pt(32, run="r1", status="failed", failure_kind="kv_cache_oom", run_started_at=t(1)), pt(8, run="r2", run_started_at=t(2))])
    s = src.run_summaries(engine)
    assert [x.run_id for x in s] == ["r2", "r1"]
    assert s[1].ratio == "1/3 green" and s[1].failures == {"kv_cache_oom": 2}
    assert s[1].started_at is not None and s[1].started_at.year == 2026
    assert src.run_summaries(engine, dag_id="nope") == []
    refs = src.latest_runs(engine)
    before = src.data_version(engine, refs)
    seed(engine, [pt(64, run="r2", run_started_at=t(2))])
    assert src.data_version(engine, refs) != before


def test_planned_points_that_never_ran_count_in_the_total(engine):
    """A serve group whose server never booted has no result rows; the store's view still counts it."""
    from infersweep.report.service import build_report
    from infersweep.store.db import write_transaction
    from infersweep.store.records import apply_group

    seed(engine, [pt(8, run="r1", run_started_at=t(1))])
    with write_transaction(engine) as conn:
        apply_group(conn, {"dag_id": "cfg", "run_id": "r1", "group_id": "cfg-tp4-none-1024-1024", "n_points": 1})
        apply_group(conn, {"dag_id": "cfg", "run_id": "r1", "group_id": "never-booted", "config_key": "cfg",
                           "n_points": 4, "status": "failed", "failure_kind": "kv_cache_oom"})
    (summary,) = src.run_summaries(engine, runs={("cfg", "r1")})
    assert summary.ratio == "1/5 green"
    url = engine.url.render_as_string(hide_password=False)
    if url.startswith("sqlite"):
        import tempfile
        from pathlib import Path

        out = build_report(Path(tempfile.mkdtemp()) / "r.html", db_url=url, runs=["cfg/r1"])
        html = out.path.read_text()
        assert "1/5 green" in html and "1/5 points green" in html
