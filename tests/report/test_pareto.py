"""Pareto frontier on hand-made points: directions, ties, duplicates, dominance, degenerate input."""

from __future__ import annotations

import math
import random

import pytest

from infersweep.report.pareto import dominated, pareto_front


def brute_force(xs, ys, x_dir="max", y_dir="max"):
    pts = [(x, y) for x, y in zip(xs, ys, strict=True)]
    keep = []
    seen = set()
    for i, p in enumerate(pts):
        if any(dominated(p, q, x_dir=x_dir, y_dir=y_dir) for q in pts):
            continue
        if p in seen:
            continue
        seen.add(p)
        keep.append(i)
    return sorted(keep, key=lambda i: pts[i])


def test_max_max_drops_dominated_points_and_orders_by_x():
    xs = [10, 20, 30, 15, 25]
    ys = [100, 80, 50, 70, 40]
    assert pareto_front(xs, ys) == [0, 1, 2]


def test_single_point_is_its_own_frontier():
    assert pareto_front([5.0], [7.0]) == [0]


def test_empty_input():
    assert pareto_front([], []) == []


def test_exact_duplicates_collapse_to_first_occurrence():
    assert pareto_front([1, 1, 2], [5, 5, 3]) == [0, 2]


def test_ties_on_one_axis_keep_only_the_better_on_the_other():
    # same x: the lower y is dominated; same y: the lower x is dominated
    assert pareto_front([10, 10, 20], [5, 8, 1]) == [1, 2]
    assert pareto_front([10, 20, 30], [5, 5, 1]) == [1, 2]


def test_min_direction_for_latency_axis():
    latency = [1.0, 2.0, 3.0, 2.5]
    tput = [100, 300, 500, 250]  # the 2.5 s point is worse than the 2.0 s one on both axes
    assert pareto_front(latency, tput, x_dir="min", y_dir="max") == [0, 1, 2]


def test_both_min():
    assert pareto_front([1, 2, 3], [3, 2, 4], x_dir="min", y_dir="min") == [0, 1]


def test_missing_and_non_finite_values_are_ignored():
    assert pareto_front([1, None, math.nan, 2], [5, 9, 9, math.inf]) == [0]


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="x values"):
        pareto_front([1, 2], [1])
    with pytest.raises(ValueError, match="directions"):
        pareto_front([1], [1], x_dir="up")  # type: ignore[arg-type]


@pytest.mark.parametrize("x_dir,y_dir", [("max", "max"), ("min", "max"), ("max", "min"), ("min", "min")])
def test_matches_brute_force_on_random_points_with_ties(x_dir, y_dir):
    rng = random.Random(7)
    for _ in range(50):
        n = rng.randint(1, 30)
        xs = [rng.randint(0, 8) for _ in range(n)]  # small ranges force ties and duplicates
        ys = [rng.randint(0, 8) for _ in range(n)]
        assert pareto_front(xs, ys, x_dir=x_dir, y_dir=y_dir) == brute_force(xs, ys, x_dir, y_dir)


def test_dominated_is_strict():
    assert dominated((1, 1), (2, 1))
    assert not dominated((1, 1), (1, 1))
    assert dominated((2, 5), (1, 5), x_dir="min")
