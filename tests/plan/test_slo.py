"""SLO search (plan.slo): bisection finds the full ladder's answer in at most log2(len) + 2 points."""

from __future__ import annotations

import math
import random

import pytest

from infersweep.plan.slo import SloSearch, ladder_answer, meets, slo_search

LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TARGETS = {"p99_ttft_ms": 2000.0, "median_tpot_ms": 50.0}


def latency(conc: int, scale: float = 1.0) -> dict[str, float]:
    """Latencies that grow with concurrency (a queueing-like curve)."""
    return {"p99_ttft_ms": 40.0 * conc * scale, "median_tpot_ms": 10.0 + 0.2 * conc * scale}


def test_meets_names_the_first_violation() -> None:
    assert meets({"p99_ttft_ms": 100, "median_tpot_ms": 20}, TARGETS) == (True, "")
    ok, why = meets({"p99_ttft_ms": 2500, "median_tpot_ms": 20}, TARGETS)
    assert not ok and why == "p99_ttft_ms 2,500.0 > 2,000.0"
    assert meets(None, TARGETS) == (False, "the point failed")
    assert meets({"p99_ttft_ms": 10}, TARGETS)[1] == "median_tpot_ms missing"


@pytest.mark.parametrize("scale", [0.01, 0.1, 0.5, 1.0, 3.0, 50.0, 1000.0])
def test_bisection_agrees_with_the_ladder_within_the_point_bound(scale: float) -> None:
    points = {c: latency(c, scale) for c in LADDER}
    measured: list[int] = []

    def measure(c: int) -> tuple[dict[str, float], float]:
        measured.append(c)
        return points[c], 100.0 * c

    search = slo_search(LADDER, TARGETS, measure)
    assert search.best == ladder_answer(points, TARGETS)
    assert len(measured) <= math.log2(len(LADDER)) + 2
    assert len(set(measured)) == len(measured)
    if search.best is not None:
        assert search.best_tput == 100.0 * search.best


def test_random_monotone_ladders_always_agree() -> None:
    rng = random.Random(7)
    for _ in range(300):
        ladder = tuple(sorted(rng.sample(range(1, 2000), rng.randint(1, 12))))
        cut = rng.uniform(0, 2500)
        points = {c: {"p99_ttft_ms": float(c)} for c in ladder}
        calls = []
        search = slo_search(ladder, {"p99_ttft_ms": cut}, lambda c, p=points, k=calls: (k.append(c), (p[c], 1.0))[1])
        assert search.best == ladder_answer(points, {"p99_ttft_ms": cut})
        assert len(calls) <= math.log2(len(ladder)) + 2


def test_a_failed_point_counts_as_missing_the_slo() -> None:
    search = SloSearch(LADDER, TARGETS)
    while (c := search.next()) is not None:
        search.record(c, None if c >= 64 else latency(c, 0.01), 1.0)
    assert search.best == 32
    assert search.skip_reason(512).startswith("above conc 64, which misses the SLO (the point failed)")


def test_skip_reasons_name_the_boundary() -> None:
    search = SloSearch(LADDER, TARGETS)
    while (c := search.next()) is not None:
        search.record(c, latency(c), 10.0 * c)
    assert search.best == 32  # 40 ms * 32 = 1,280 ms; at 64: 2,560 ms > 2,000 ms
    unmeasured = [c for c in LADDER if c not in search.results]
    reasons = {c: search.skip_reason(c) for c in unmeasured}
    assert all("misses the SLO" in r or "meets the SLO" in r for r in reasons.values())


def test_range_mode_finds_the_exact_integer_boundary() -> None:
    points = {c: {"p99_ttft_ms": 40.0 * c} for c in range(4, 257)}
    search = slo_search((4, 256), {"p99_ttft_ms": 2000.0}, lambda c: (points[c], float(c)), range_mode=True)
    assert search.best == 50
    assert len(search.results) <= math.ceil(math.log2(256 - 4 + 1)) + 2


def test_constructor_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="at least one concurrency"):
        SloSearch((), TARGETS)
    with pytest.raises(ValueError, match="at least one target"):
        SloSearch(LADDER, {})
