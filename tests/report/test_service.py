"""The report DAG's entry point: per-run report plus the gate against the previous image."""

from __future__ import annotations

from datetime import UTC, datetime

from infersweep.report.sample import sample_points
from infersweep.report.service import report_and_gate_run, safe_name, write_atomic
from infersweep.report.text import frontier_table

from .seed import seed, store_engine


def _night(day: int, image: str, speedup: float):
    return sample_points(run_id=f"scheduled__2026-11-{day:02d}", image=image, speedup=speedup,
                         seq_lens=((1024, 1024),))


def test_first_run_has_a_report_but_no_baseline(tmp_path, sqlite_url):
    seed(store_engine(sqlite_url), _night(26, "img:1", 1.0), started=datetime(2026, 11, 26, tzinfo=UTC))
    out = report_and_gate_run("llama70b-sample", "scheduled__2026-11-26", out_dir=tmp_path, db_url=sqlite_url)
    assert out["baseline"] is None and out["gate"] is None and out["regressed"] is False
    assert out["summary"]["summary"] == "34/35 green"
    assert (tmp_path / "llama70b-sample" / "scheduled__2026-11-26.html").exists()


def test_a_slower_image_is_gated_against_the_previous_image(tmp_path, sqlite_url):
    engine = store_engine(sqlite_url)
    for day, image, speed in ((25, "img:1", 1.0), (26, "img:1", 1.0), (27, "img:2", 0.8)):
        points = [p.model_copy(update={"run_started_at": datetime(2026, 11, day, tzinfo=UTC)})
                  for p in _night(day, image, speed)]
        seed(engine, points)
    out = report_and_gate_run("llama70b-sample", "scheduled__2026-11-27", out_dir=tmp_path, db_url=sqlite_url)
    assert out["baseline"] == "llama70b-sample/scheduled__2026-11-26"  # newest run with a different image
    assert out["gate"]["exit_code"] == 1 and out["regressed"] is True
    assert out["gate"]["regressions"] == 34  # every green point is ~20 % slower
    assert (tmp_path / "llama70b-sample" / "scheduled__2026-11-27.compare.html").exists()


def test_frontier_table_lists_the_frontier_per_group():
    text = frontier_table(sample_points())
    assert text.count("Pareto frontier:") == 2 and "[SIMULATED]" in text
    assert "b200 vllm fp4 tp4" in text


def test_atomic_writes_and_safe_names(tmp_path):
    p = write_atomic(tmp_path / "a" / "r.html", "x")
    assert p.read_text() == "x" and oct(p.stat().st_mode)[-3:] == "644"
    assert list((tmp_path / "a").iterdir()) == [p]  # no temporary file left behind
    assert safe_name("scheduled__2026-11-27T02:00:00+00:00") == "scheduled__2026-11-27T02_00_00_00_00"
