"""The interval-aware gate: a drop is a regression only when the intervals say so, with its confidence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from infersweep.bench.intervals import METHOD_BOOTSTRAP, Interval, repeat_intervals
from infersweep.report.compare import compare
from infersweep.report.data import ReportPoint
from infersweep.report.gate import EXIT_OK, EXIT_REGRESSION, run_gate
from infersweep.report.noise import NoiseBand, interval_verdict, side_interval

from .factories import pt

# ReportPoint gains `intervals` in another change; until then the tests add the field themselves.
if "intervals" in ReportPoint.model_fields:
    _Point: type[ReportPoint] = ReportPoint
else:
    class _Point(ReportPoint):  # type: ignore[no-redef]
        intervals: dict[str, Any] | None = None


def ipt(conc: int = 8, *, intervals: dict[str, Interval] | None = None, **kw: Any) -> ReportPoint:
    """`pt()` with intervals per metric (stored as their JSON, as the store keeps them)."""
    base = pt(conc, **kw).model_dump()
    return _Point(**{**base, "intervals": {k: v.to_json() for k, v in (intervals or {}).items()}})


def t_iv(mean: float, rel_se: float, n: int = 3) -> Interval:
    """A Student-t interval around `mean` whose standard error is `rel_se` of it."""
    from infersweep.bench.intervals import t_ppf

    half = t_ppf(0.975, n - 1) * rel_se * mean
    return Interval(lo=mean - half, hi=mean + half, level=0.95, method="student-t", n=n)


def boot_iv(mean: float, rel_half: float, n: int = 500) -> Interval:
    return Interval(lo=mean * (1 - rel_half), hi=mean * (1 + rel_half), level=0.95, method=METHOD_BOOTSTRAP, n=n)


FLOOR_BAND = NoiseBand(rel=0.05, source="floor", n=0)


def _tput(result: Any) -> Any:
    return {d.metric: d for d in result.rows[0].deltas}["tput_per_gpu"]


# --- interval_verdict ------------------------------------------------------------------------------------------
def test_a_drop_whose_interval_lies_beyond_the_floor_is_a_regression() -> None:
    j = interval_verdict(1000, 850, t_iv(1000, 0.01), t_iv(850, 0.01), higher_is_better=True, band=FLOOR_BAND)
    assert j is not None and j.verdict == "regression"
    assert j.confidence > 0.975
    assert j.rel_lo < -0.15 < j.rel_hi < -0.05  # the interval of the change, entirely beyond -5 %


def test_a_large_drop_with_wide_intervals_is_not_a_regression() -> None:
    j = interval_verdict(1000, 850, t_iv(1000, 0.08), t_iv(850, 0.08), higher_is_better=True, band=FLOOR_BAND)
    assert j is not None and j.verdict == "ok"
    assert 0.5 < j.confidence < 0.975  # probably worse than the floor, but not at the gate's level
    assert j.rel_lo < -0.05 < j.rel_hi


def test_a_small_significant_drop_inside_the_floor_is_not_a_regression() -> None:
    j = interval_verdict(1000, 970, t_iv(1000, 0.001), t_iv(970, 0.001), higher_is_better=True, band=FLOOR_BAND)
    assert j is not None and j.verdict == "ok" and j.confidence < 0.01


def test_latency_direction_and_improvements() -> None:
    worse = interval_verdict(100, 130, t_iv(100, 0.01), t_iv(130, 0.01), higher_is_better=False, band=FLOOR_BAND)
    better = interval_verdict(100, 70, t_iv(100, 0.01), t_iv(70, 0.01), higher_is_better=False, band=FLOOR_BAND)
    assert worse is not None and worse.verdict == "regression"
    assert better is not None and better.verdict == "improvement" and better.confidence < 0.001


def test_confidence_is_the_one_sided_probability_beyond_the_floor() -> None:
    # Normal errors (bootstrap intervals): L = ln(0.9), se = sqrt(2)·0.02; P(L < ln 0.95) = Φ((ln .95 − ln .9)/se)
    b, h = boot_iv(1000, 1.959964 * 0.02), boot_iv(900, 1.959964 * 0.02)
    j = interval_verdict(1000, 900, b, h, higher_is_better=True, band=FLOOR_BAND)
    assert j is not None
    from statistics import NormalDist

    expected = NormalDist().cdf((math.log(0.95) - math.log(0.9)) / (math.sqrt(2) * 0.02))
    assert j.confidence == pytest.approx(expected, rel=1e-6)


def test_within_run_intervals_add_the_known_run_noise_and_keep_the_band() -> None:
    # Tight bootstrap intervals, but history says runs differ by 4 %: a -10 % change is not conclusive.
    hist_band = NoiseBand(rel=0.12, source="history", n=6, sigma_rel=0.04)
    j = interval_verdict(1000, 900, boot_iv(1000, 0.005), boot_iv(900, 0.005), higher_is_better=True, band=hist_band)
    assert j is not None and j.within_run and j.verdict == "ok"
    # Without any run-noise knowledge the band (floor) still has to be exceeded.
    j2 = interval_verdict(1000, 960, boot_iv(1000, 0.001), boot_iv(960, 0.001), higher_is_better=True,
                          band=FLOOR_BAND)
    assert j2 is not None and j2.verdict == "ok"


def test_non_positive_values_fall_back() -> None:
    assert interval_verdict(0, 5, t_iv(1, 0.1), t_iv(5, 0.1), higher_is_better=True, band=FLOOR_BAND) is None


def test_side_interval_of_several_samples_is_a_t_interval_over_them() -> None:
    iv = side_interval([(100.0, t_iv(100, 0.01)), (104.0, None), (96.0, None)])
    assert iv == repeat_intervals([100.0, 104.0, 96.0])
    assert side_interval([(100.0, None)]) is None


# --- through the gate --------------------------------------------------------------------------------------------
def test_gate_uses_intervals_and_reports_confidence_and_interval() -> None:
    base = [ipt(8, tput=1000, intervals={"tput_per_gpu": t_iv(1000, 0.01)})]
    head = [ipt(8, run="r2", tput=850, intervals={"tput_per_gpu": t_iv(850, 0.01)})]
    result = run_gate(compare(base, head))
    d = _tput(result)
    assert d.verdict == "regression" and result.exit_code == EXIT_REGRESSION
    assert d.confidence is not None and d.confidence > 0.975
    row = result.rows[0].to_dict()["metrics"]["tput_per_gpu"]
    assert row["confidence"] == d.confidence
    lo, hi = row["interval"]
    assert lo < -0.05 and hi < -0.05
    assert "CI" in result.rows[0].note and "P(worse than floor)" in result.rows[0].note
    # Metrics without intervals keep the band rule and report no confidence.
    ttft = result.rows[0].to_dict()["metrics"]["median_ttft_ms"]
    assert ttft["confidence"] is None and ttft["interval"] is None and ttft["verdict"] == "ok"


def test_gate_with_wide_intervals_passes_a_drop_the_band_would_flag() -> None:
    base = [ipt(8, tput=1000, intervals={"tput_per_gpu": t_iv(1000, 0.06)})]
    head = [ipt(8, run="r2", tput=880, intervals={"tput_per_gpu": t_iv(880, 0.06)})]
    assert run_gate(compare([pt(8, tput=1000)], [pt(8, run="r2", tput=880)])).exit_code == EXIT_REGRESSION
    result = run_gate(compare(base, head))
    assert _tput(result).verdict == "ok" and result.exit_code == EXIT_OK
    assert 0.5 < (_tput(result).confidence or 0) < 0.975


def test_intervals_on_one_side_only_keep_todays_rule() -> None:
    base = [ipt(8, tput=1000, intervals={"tput_per_gpu": t_iv(1000, 0.2)})]
    head = [pt(8, run="r2", tput=880)]
    d = _tput(run_gate(compare(base, head)))
    assert d.verdict == "regression" and d.confidence is None and d.interval is None


def test_malformed_stored_intervals_are_ignored() -> None:
    base = [_Point(**{**pt(8, tput=1000).model_dump(), "intervals": {"tput_per_gpu": {"lo": 1}}})]
    head = [_Point(**{**pt(8, run="r2", tput=880).model_dump(), "intervals": {"tput_per_gpu": {"lo": 2, "hi": 1}}})]
    d = _tput(run_gate(compare(base, head)))
    assert d.verdict == "regression" and d.confidence is None


def test_false_alarm_rate_with_repeat_intervals_is_at_most_the_level() -> None:
    # No change, 3 % run-to-run noise, 3 repeats per side: the gate must rarely call a regression.
    rng = np.random.default_rng(0)
    alarms = 0
    trials = 400
    for _ in range(trials):
        b, h = rng.normal(1000, 30, 3), rng.normal(1000, 30, 3)
        bi, hi = repeat_intervals(b.tolist()), repeat_intervals(h.tolist())
        j = interval_verdict(float(b.mean()), float(h.mean()), bi, hi, higher_is_better=True, band=FLOOR_BAND)
        alarms += j is not None and j.verdict == "regression"
    assert alarms / trials <= 0.025
    # And a real 15 % drop with the same noise is found almost always.
    found = 0
    for _ in range(200):
        b, h = rng.normal(1000, 30, 3), rng.normal(850, 25.5, 3)
        j = interval_verdict(float(b.mean()), float(h.mean()), repeat_intervals(b.tolist()),
                             repeat_intervals(h.tolist()), higher_is_better=True, band=FLOOR_BAND)
        found += j is not None and j.verdict == "regression"
    assert found / 200 > 0.8
