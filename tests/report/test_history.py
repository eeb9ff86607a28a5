"""The sweep history (pure logic): run order by logical date with a backfill, interpolation on the frontier,
regressions against the previous run and the gate's noise band, levels, and the text/JSON forms."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from infersweep.report.history import (
    FrontierVertex,
    History,
    HistoryRun,
    build_history,
    choose_levels,
    history_text,
    parse_since,
    tput_at_interactivity,
)
from infersweep.report.noise import noise_band

from .factories import pt

#: (conc, interactivity, throughput/GPU at scale 1): a clean frontier, interactivity falling with concurrency.
CURVE = ((4, 76.0, 40.0), (8, 72.0, 80.0), (16, 64.0, 160.0), (32, 48.0, 320.0), (64, 16.0, 640.0))


def _day(day: int, hour: int = 2) -> datetime:
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def curve(run: str, scale: float = 1.0, *, image: str = "img:a", tp: int = 4, **kw) -> list:
    """One run of config `cfg`: the CURVE with throughput scaled by `scale` (interactivity unchanged)."""
    return [pt(c, run=run, image=image, tput=tput * scale, intvty=intvty, tp=tp, **kw) for c, intvty, tput in CURVE]


def nightly(run: str, day: int, *, image: str = "img:a", kind: str = "scheduled", started: datetime | None = None,
            logical: bool = True) -> HistoryRun:
    return HistoryRun(dag_id="cfg", run_id=run, image=image, logical_date=_day(day) if logical else None,
                      started_at=started or _day(day), trigger_kind=kind)


def test_throughput_is_interpolated_linearly_between_frontier_vertices():
    frontier = [FrontierVertex(conc=c, intvty=i, tput_per_gpu=t) for c, i, t in CURVE]
    assert tput_at_interactivity(frontier, 56.0) == pytest.approx(240.0)  # halfway between 64 and 48 tok/s/user
    assert tput_at_interactivity(frontier, 64.0) == pytest.approx(160.0)  # on a vertex
    assert tput_at_interactivity(frontier, 74.0) == pytest.approx(60.0)
    # a level the run never reached is not extrapolated
    assert tput_at_interactivity(frontier, 80.0) is None
    assert tput_at_interactivity(frontier, 10.0) is None
    assert tput_at_interactivity([], 50.0) is None
    assert tput_at_interactivity([FrontierVertex(conc=1, intvty=50.0, tput_per_gpu=9.0)], 50.0) == 9.0


def test_levels_are_read_off_the_frontier_not_off_dominated_points():
    dominated = pt(24, run="r1", tput=150.0, intvty=50.0)  # below the frontier at 50 tok/s/user
    history = build_history([*curve("r1"), dominated], config_key="cfg", levels=[56.0, 50.0])
    (run,) = history.topologies[0].runs
    assert [v.conc for v in run.frontier] == [64, 32, 16, 8, 4]  # conc 24 is not on it
    by_level = {v.level: v.tput_per_gpu for v in run.levels}
    assert by_level[56.0] == pytest.approx(240.0)
    assert by_level[50.0] == pytest.approx(160.0 + (64 - 50) / 16 * 160.0)
    assert run.points_total == 6 and run.points_ok == 6 and run.peak_tput_per_gpu == 640.0


def test_a_backfilled_run_sits_at_its_logical_date_and_is_compared_in_that_place():
    points = [*curve("n20"), *curve("n22", 0.98), *curve("bf21", 1.01), *curve("m23", 0.99)]
    runs = [
        nightly("n20", 20), nightly("n22", 22),
        # ran on the 25th, for the night of the 21st
        nightly("bf21", 21, kind="backfill", started=_day(25, 9)),
        # a manual run without a logical date sits at its start
        nightly("m23", 23, kind="manual", logical=False),
    ]
    history = build_history(points, config_key="cfg", runs=runs, levels=[56.0])
    assert [r.run_id for r in history.runs] == ["n20", "bf21", "n22", "m23"]
    entries = history.topologies[0].runs
    assert [e.run.run_id for e in entries] == ["n20", "bf21", "n22", "m23"]
    assert entries[1].run.backfilled and entries[1].run.date == _day(21)
    assert entries[0].levels[0].verdict == "first"
    assert entries[1].levels[0].baseline_run == "cfg/n20"
    assert entries[2].levels[0].baseline_run == "cfg/bf21"  # not n20: the backfill is the night before
    assert entries[2].levels[0].rel == pytest.approx(0.98 / 1.01 - 1)
    assert entries[3].levels[0].baseline_date == _day(22)


def test_runs_without_a_store_record_are_dated_by_their_start():
    points = [*curve("late", run_started_at=_day(24)), *curve("early", run_started_at=_day(20))]
    history = build_history(points, config_key="cfg")
    assert [r.run_id for r in history.runs] == ["early", "late"]


def test_a_drop_beyond_the_band_is_a_regression_and_within_it_is_ok():
    points = [*curve("r1"), *curve("r2", 0.97), *curve("r3", 0.90), *curve("r4", 1.0)]
    runs = [nightly(f"r{i}", 19 + i) for i in range(1, 5)]
    history = build_history(points, config_key="cfg", runs=runs, levels=[56.0])
    _r1, r2, r3, r4 = history.topologies[0].runs
    assert r2.levels[0].verdict == "ok" and not r2.regressed  # -3 % is inside the 5 % floor
    v3 = r3.levels[0]
    assert v3.verdict == "regression" and r3.regressed
    assert v3.rel == pytest.approx(0.90 / 0.97 - 1)
    assert (v3.band, v3.band_source, v3.band_n) == (0.05, "floor", 0)  # one earlier run: not enough history
    assert v3.baseline == pytest.approx(240.0 * 0.97)
    assert r4.levels[0].verdict == "improvement"
    (reg,) = history.regressions()
    assert (reg.run, reg.level, reg.image, reg.date) == ("cfg/r3", 56.0, "img:a", _day(22))


def test_the_noise_band_is_the_gates_model_over_earlier_runs():
    scales = [1.0, 1.08, 0.94, 1.05, 0.97, 0.90]
    points = [p for i, s in enumerate(scales) for p in curve(f"r{i}", s)]
    runs = [nightly(f"r{i}", 20 + i) for i in range(len(scales))]
    history = build_history(points, config_key="cfg", runs=runs, levels=[56.0])
    last = history.topologies[0].runs[-1].levels[0]
    # The pair (r4, r5) is left out; the four runs before it are the history, as in the gate.
    expected = noise_band(history=[240.0 * s for s in scales[:4]], floor=0.05, k=3.0)
    assert (last.band, last.band_source, last.band_n) == (pytest.approx(expected.rel), "history", 4)
    assert last.band > 0.05
    assert last.rel == pytest.approx(0.90 / 0.97 - 1)
    assert last.verdict == "ok"  # -7 % is inside this noisy history's band
    # the same drop with a tighter band (k) is a regression: the band decides, not the size of the drop
    tight = build_history(points, config_key="cfg", runs=runs, levels=[56.0], k=0.5)
    assert tight.topologies[0].runs[-1].levels[0].verdict == "regression"
    assert tight.k == 0.5 and tight.floor == 0.05


def test_a_run_whose_points_all_failed_is_marked_and_the_next_compares_with_the_last_good_one():
    failed = [pt(c, run="r2", status="failed", failure_kind="server_crash") for c, _, _ in CURVE]
    points = [*curve("r1"), *failed, *curve("r3", 0.99)]
    runs = [nightly(f"r{i}", 19 + i) for i in range(1, 4)]
    history = build_history(points, config_key="cfg", runs=runs, levels=[56.0])
    _r1, r2, r3 = history.topologies[0].runs
    assert r2.levels[0].verdict == "failed" and r2.regressed and r2.frontier == []
    assert r2.failures == {"server_crash": 5} and r2.points_ok == 0
    assert r3.levels[0].baseline_run == "cfg/r1" and r3.levels[0].verdict == "ok"
    assert [r.value.verdict for r in history.regressions()] == ["failed"]


def test_a_level_a_run_did_not_reach_has_no_value_and_no_verdict():
    short = [p for p in curve("r2") if p.conc >= 16]  # reaches 64 tok/s/user at most
    history = build_history([*curve("r1"), *short], config_key="cfg", levels=[70.0, 56.0])
    r2 = history.topologies[0].runs[1]
    assert [(v.level, v.verdict) for v in r2.levels] == [(56.0, "ok"), (70.0, "no-data")]  # levels sorted
    assert r2.levels[1].tput_per_gpu is None and not r2.regressed


def test_default_levels_lie_where_most_runs_frontiers_reach():
    history = build_history([*curve("r1"), *curve("r2")], config_key="cfg")
    levels = history.topologies[0].levels
    assert levels == [28.0, 46.0, 64.0]  # 20/50/80 % across 16..76 tok/s/user, two significant digits
    assert all(v.tput_per_gpu is not None for r in history.topologies[0].runs for v in r.levels)
    one = [FrontierVertex(conc=1, intvty=33.3, tput_per_gpu=1.0)]
    assert choose_levels([one, one]) == [33.0]
    assert choose_levels([]) == []


def test_topologies_are_separate_and_other_config_keys_are_ignored():
    points = [*curve("r1"), *curve("r1", tp=8), *curve("r1", config_key="other"), *curve("r2", 0.5, tp=8)]
    history = build_history(points, config_key="cfg", levels=[56.0])
    assert [t.topology for t in history.topologies] == ["tp4", "tp8"]
    tp4, tp8 = history.topologies
    assert [r.run.run_id for r in tp4.runs] == ["r1"] and [r.run.run_id for r in tp8.runs] == ["r1", "r2"]
    assert tp8.runs[1].regressed and not tp4.runs[0].regressed
    assert tp4.label == "h200 vllm fp8 tp4 · ISL 1024 / OSL 1024" and not tp4.simulated


def test_since_shows_runs_dated_on_or_after_it_with_the_same_verdicts():
    points = [*curve("r1"), *curve("r2", 0.8), *curve("r3")]
    runs = [nightly(f"r{i}", 19 + i) for i in range(1, 4)]
    everything = build_history(points, config_key="cfg", runs=runs, levels=[56.0])
    history = build_history(points, config_key="cfg", runs=runs, levels=[56.0], since=date(2026, 11, 21))
    assert [r.run_id for r in history.runs] == ["r2", "r3"]
    assert [r.run.run_id for r in history.topologies[0].runs] == ["r2", "r3"]
    # the run before the window is still r2's baseline: a window does not hide a regression
    assert history.topologies[0].runs == everything.topologies[0].runs[1:]
    assert history.topologies[0].runs[0].levels[0].verdict == "regression"
    assert build_history(points, config_key="cfg", runs=runs, since=date(2026, 12, 1)).topologies == []
    assert parse_since("2026-11-21") == datetime(2026, 11, 21, tzinfo=UTC)
    assert parse_since("2026-11-21T03:00:00+01:00") == datetime(2026, 11, 21, 2, tzinfo=UTC)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_since("last tuesday")


def test_json_round_trip_and_strict_models():
    points = [*curve("r1"), *curve("r2", 0.8)]
    history = build_history(points, config_key="cfg", levels=[56.0])
    again = History.model_validate_json(history.model_dump_json())
    assert again == history
    data = history.model_dump(mode="json")
    data["topologies"][0]["runs"][0]["levels"][0]["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        History.model_validate(data)


def test_text_marks_regressions_backfills_and_images():
    points = [*curve("n20"), *curve("bf21", image="img:b"), *curve("n22", 0.8, image="img:c")]
    runs = [nightly("n20", 20), nightly("bf21", 21, image="img:b", kind="backfill", started=_day(25)),
            nightly("n22", 22, image="img:c")]
    text = history_text(build_history(points, config_key="cfg", runs=runs, levels=[56.0]))
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("2026-11-")]
    assert [r.split()[0] + " " + r.split()[1] for r in rows] == ["2026-11-20 02:00", "2026-11-21 02:00",
                                                                   "2026-11-22 02:00"]
    assert "(backfill)" in rows[1] and "img:b" in rows[1]
    assert "192.0 (-20.0%! ±5%)" in rows[2] and rows[2].endswith("REGRESSION")
    assert "tput/GPU @56 tok/s/user" in text
    assert "Regressions (1 level):" in text
    assert "img:c vs 2026-11-21 02:00: @56 -20.0% beyond ±5.0% (floor, n=0)" in text
    assert history_text(build_history(curve("r1"), config_key="cfg")).endswith("No regressions.")
