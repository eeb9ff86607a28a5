"""The frontier-adaptive policy (plan.adaptive): bounds, decisions with reasons, replays against a ladder."""

from __future__ import annotations

import math

import pytest

from infersweep.plan.adaptive import (
    AdaptiveOptions,
    Frontier,
    FrontierPoint,
    Observation,
    Scope,
    Topology,
    close,
    frontier_gap,
    group_skip,
    next_for_topology,
    relative_gain,
    replay,
)

CONCS = (1, 2, 4, 8, 16, 32, 64, 128)


def curve(peak_tput: float, peak_intvty: float, knee: float, concs: tuple[int, ...] = CONCS) -> dict[int, Observation]:
    """A smooth, saturating topology curve: throughput/GPU rises to `peak_tput`, interactivity falls from
    `peak_intvty` once the batch passes `knee`."""
    out = {}
    for c in concs:
        x = peak_intvty / (1 + c / knee) ** 0.7
        y = peak_tput * c / (c + knee)
        out[c] = Observation(c, x, y, gpu_s=10.0 * c)
    return out


def test_frontier_value_interpolates_between_vertices_and_is_zero_past_the_most_interactive() -> None:
    f = Frontier.of([FrontierPoint(10, 100, "A", 64), FrontierPoint(20, 50, "A", 8), FrontierPoint(15, 40, "B", 4)])
    assert [p.conc for p in f.vertices] == [64, 8]  # B's point is dominated
    assert f.value(5) == 100  # left of the front: the fastest vertex is at least as interactive
    # Between vertices: a power law (straight on log-log axes), or a straight line on linear axes.
    assert f.value(15) == pytest.approx(100 * 0.5 ** (math.log(1.5) / math.log(2)))
    assert f.value(15, interp="linear") == pytest.approx(75)
    assert f.value(21) == 0.0
    assert relative_gain(15, 90, f) == pytest.approx(90 / f.value(15) - 1)
    assert math.isinf(relative_gain(30, 1, f))


def test_frontier_gap_is_zero_for_the_same_frontier_and_measures_the_largest_shortfall() -> None:
    full = Frontier.of([FrontierPoint(10, 100, "A", 64), FrontierPoint(15, 90, "A", 16), FrontierPoint(20, 50, "A", 8)])
    assert frontier_gap(full, full) == 0.0
    without_middle = Frontier.of([FrontierPoint(10, 100, "A", 64), FrontierPoint(20, 50, "A", 8)])
    # At x=15 the full front has 90, the line without it 75 (linear) or 66.7 (log): the largest gap anywhere.
    assert frontier_gap(full, without_middle, interp="linear") == pytest.approx(15 / 90)
    assert frontier_gap(full, without_middle) == pytest.approx((90 - without_middle.value(15)) / 90)
    # Too high counts too: a frontier drawn past a vertex that is below the line overstates throughput.
    low_middle = Frontier.of([*full.vertices[:1], FrontierPoint(15, 60, "A", 16), full.vertices[-1]])
    assert frontier_gap(low_middle, without_middle) == pytest.approx((without_middle.value(15) - 60) / 60)
    assert frontier_gap(low_middle, without_middle, two_sided=False) == 0.0
    assert frontier_gap(full, Frontier.of([FrontierPoint(10, 100, "A", 64)])) == 1.0  # does not reach x=20


def test_a_dominated_topology_is_skipped_after_its_ends_with_a_reason_naming_the_winner() -> None:
    good = curve(1000, 100, 16)
    bad = {c: Observation(c, o.x * 0.5, o.y * 0.5, o.gpu_s) for c, o in curve(1000, 100, 16).items()}
    result = replay({"g": ("TP8", good), "b": ("TP4", bad)}, options=AdaptiveOptions(tolerance=0.01, noise=0.0))
    measured_bad = [d.conc for d in result.decisions if d.group_id == "b" and d.action == "measure"]
    assert sorted(measured_bad) == [1, 128]  # its ends only: they bound everything in between
    skips = [d for d in result.decisions if d.group_id == "b" and d.action == "skip"]
    assert {d.conc for d in skips} == set(CONCS) - {1, 128}
    assert all("dominated by TP8" in d.reason or "below the frontier through TP8" in d.reason for d in skips)
    assert all(d.gain is not None and d.gain < 0 for d in skips)
    assert result.gap == 0.0
    assert result.measured < result.total


def test_replay_on_a_smooth_family_saves_points_within_the_tolerance() -> None:
    ladders = {f"g{i}": (f"TP{2 ** i}", curve(1000 * (1 + 0.3 * i), 120 - 25 * i, 4 * 2 ** i)) for i in range(4)}
    result = replay(ladders, options=AdaptiveOptions(tolerance=0.01, noise=0.0))
    assert result.gap <= 0.02
    assert result.fraction < 1.0
    assert 0 < result.gpu_fraction <= 1.0
    # Every ladder point is either measured or skipped with a reason.
    decided = {(d.group_id, d.conc) for d in result.decisions if d.conc}
    assert decided == {(g, c) for g in ladders for c in CONCS}
    assert all(d.reason for d in result.decisions)


def test_a_point_budget_stops_the_search_and_says_so() -> None:
    ladders = {"a": ("TP1", curve(1000, 100, 8)), "b": ("TP2", curve(900, 110, 8))}
    result = replay(ladders, options=AdaptiveOptions(tolerance=0.0001, noise=0.0, max_points=5))
    assert result.measured == 5
    assert any("point budget spent" in d.reason for d in result.decisions if d.action == "skip")


def test_a_failed_top_end_moves_the_end_down() -> None:
    ladder = curve(1000, 100, 8)
    ladder[128] = Observation(128, 0.0, 0.0, ok=False)  # e.g. KV-cache OOM at the top
    topo = Topology("a", "TP1", CONCS, measured={128: ladder[128]})
    scope = Scope([topo], AdaptiveOptions(noise=0.0))
    assert next_for_topology(scope, "a").conc == 64  # type: ignore[union-attr]


def test_a_prior_skips_a_whole_dominated_topology_before_it_is_measured() -> None:
    good = curve(1000, 100, 16)
    weak = curve(300, 40, 16)
    topo_good = Topology("g", "TP8", CONCS, measured=dict(good), prior=dict(good), prior_source="roofline",
                         prior_margin=0.25)
    topo_weak = Topology("w", "TP2", CONCS, prior=dict(weak), prior_source="roofline", prior_margin=0.25)
    scope = Scope([topo_good, topo_weak], AdaptiveOptions(noise=0.0))
    decision = group_skip(scope, topo_weak)
    assert decision is not None and decision.action == "skip-group" and decision.conc == 0
    assert "roofline prior" in decision.reason
    # A prior that could beat the frontier keeps the group.
    strong = Topology("s", "TP4", CONCS, prior=dict(curve(2000, 150, 16)), prior_source="roofline", prior_margin=0.25)
    assert group_skip(Scope([topo_good, strong], AdaptiveOptions(noise=0.0)), strong) is None


def test_calibration_rescales_a_prior_that_is_off_by_a_common_factor() -> None:
    truth = curve(1000, 100, 16)
    prior = {c: Observation(c, o.x * 1.4, o.y * 1.4) for c, o in truth.items()}  # 40 % optimistic everywhere
    measured = {c: truth[c] for c in (1, 16, 128)}
    topo = Topology("a", "TP1", CONCS, measured=measured, prior=prior, prior_source="roofline", prior_margin=0.5)
    from infersweep.plan.adaptive import calibrate

    cal = calibrate([topo], noise=0.01)
    assert cal.n == 3
    assert cal.kx == pytest.approx(1 / 1.4) and cal.ky == pytest.approx(1 / 1.4)
    assert cal.margin == pytest.approx(0.02)  # the shape fits exactly: only the floor (twice the noise) is left


def test_close_records_one_reason_per_unmeasured_point_of_one_topology() -> None:
    a = Topology("a", "TP1", CONCS, measured={c: o for c, o in curve(1000, 100, 8).items() if c in (1, 128)})
    b = Topology("b", "TP2", CONCS, measured={c: o for c, o in curve(500, 50, 8).items() if c in (1, 128)})
    scope = Scope([a, b], AdaptiveOptions(noise=0.0))
    out = close(scope, only="b")
    assert {d.conc for d in out} == set(CONCS) - {1, 128}
    assert {d.group_id for d in out} == {"b"}


def test_range_mode_bisects_integers_geometrically() -> None:
    full = curve(1000, 100, 8, concs=tuple(range(4, 65)))
    topo = Topology("a", "TP1", (4, 64), measured={4: full[4], 64: full[64]}, mode="range")
    scope = Scope([topo], AdaptiveOptions(tolerance=0.0, noise=0.0))
    decision = next_for_topology(scope, "a")
    assert decision is not None and decision.conc == 16  # sqrt(4 * 64)


def test_options_budget() -> None:
    assert AdaptiveOptions().budget(40) == 40
    assert AdaptiveOptions(max_points=0.5).budget(41) == 21
    assert AdaptiveOptions(max_points=7).budget(40) == 7
