"""Frontier-adaptive sweeps: measure the points that can still move the Pareto frontier, skip the rest.

InferenceX measures every topology at every concurrency of its ladder. Most of those points lie far below
the frontier of throughput per GPU against interactivity, which is the only thing the report keeps. This
module decides, from what is already measured, which point to measure next and which points cannot
matter, and says why for every point it skips. It is pure: the DAG's benchmark step (one group at a time)
and the replay scripts under perf/ (all groups of a scope at once) drive it with the same functions.

The method, in plain words (docs/adaptive.md has it at length):

1. A *scope* is one config key and sequence length. Its frontier is the Pareto front of every measured
   point of every topology, interpolated between vertices as a power law (straight on log-log axes).
2. An unmeasured point lies inside the box its measured neighbours span (throughput rises and interactivity
   falls with concurrency), under the extensions of the neighbouring segments on log-log axes (where a
   topology's curve is close to concave), and near its prior once the prior is calibrated to this run.
   Every bound is widened by the run-to-run noise allowance.
3. A point's *gain* is how much it could change the drawn frontier, either way: raise it, or pull it down
   as a vertex below the line that no measured point dominates. Points nothing bounds yet (each topology's
   ends) come first, then always the largest gain. When no point can move the frontier by more than the
   tolerance, or the point budget is spent, the sweep stops and every point left is recorded with its
   reason ("dominated by TP8 at conc 64 by >= 12%").
4. A prior (the same topology's earlier results from the store, or the simulator's roofline model) can
   skip a whole topology before its server boots, when none of its points can move the frontier this run
   has measured.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from infersweep.report.pareto import pareto_front

#: How many x positions inside an interval the bound is compared with the frontier at (plus both ends and
#: the bound's apex). The bound is piecewise linear and the frontier too, so this is only a safety net.
_GRID = 24
#: A calibrated prior's margin, in multiples of the largest residual seen so far (see `calibrate`).
SPREAD_K = 1.5


Interp = Literal["log", "linear"]


@dataclass(frozen=True)
class Observation:
    """One measured point: interactivity `x` (tok/s/user), throughput per GPU `y`, and its cost."""

    conc: int
    x: float
    y: float
    gpu_s: float = 0.0
    ok: bool = True


@dataclass(frozen=True)
class FrontierPoint:
    """A frontier vertex with the topology it came from (for reasons)."""

    x: float
    y: float
    label: str
    conc: int


@dataclass(frozen=True)
class Frontier:
    """The Pareto front of a set of points, drawn with straight lines between its vertices."""

    vertices: tuple[FrontierPoint, ...]

    @classmethod
    def of(cls, points: Iterable[FrontierPoint]) -> Frontier:
        """The front of `points` (both axes maximised), ordered by ascending interactivity."""
        pts = [p for p in points if math.isfinite(p.x) and math.isfinite(p.y) and p.x > 0 and p.y > 0]
        idx = pareto_front([p.x for p in pts], [p.y for p in pts])
        return cls(tuple(pts[i] for i in idx))

    def value(self, x: float, *, interp: Interp = "log") -> float:
        """Throughput per GPU the frontier offers at interactivity `x`: the best vertex at or beyond `x`
        when `x` is left of the front, interpolated between vertices, 0 beyond the most interactive vertex.

        `log` (default) interpolates as a power law between neighbouring vertices, a straight line on log-log
        axes: a topology's curve between two concurrencies is multiplicative (double the batch, some factor
        more throughput and less interactivity). `linear` draws straight lines on linear axes."""
        v = self.vertices
        if not v or x > v[-1].x:
            return 0.0
        if x <= v[0].x:
            return v[0].y
        for left, right in itertools.pairwise(v):
            if left.x <= x <= right.x:
                if right.x == left.x:
                    return max(left.y, right.y)
                if interp == "linear":
                    t = (x - left.x) / (right.x - left.x)
                    return left.y + t * (right.y - left.y)
                t = math.log(x / left.x) / math.log(right.x / left.x)
                return left.y * (right.y / left.y) ** t
        return 0.0  # pragma: no cover - the loop covers [v[0].x, v[-1].x]

    def neighbours(self, x: float) -> tuple[FrontierPoint | None, FrontierPoint | None]:
        """The vertices either side of `x` (None past an end)."""
        left = max((p for p in self.vertices if p.x <= x), key=lambda p: p.x, default=None)
        right = min((p for p in self.vertices if p.x >= x), key=lambda p: p.x, default=None)
        return left, right


def relative_gain(x: float, y: float, frontier: Frontier) -> float:
    """How much a point at (x, y) would raise the frontier at x, relative to it (negative: it is below;
    inf: nothing on the frontier reaches that interactivity)."""
    f = frontier.value(x)
    if f <= 0:
        return math.inf
    return y / f - 1.0


def frontier_gap(full: Frontier, approx: Frontier, *, samples: int = 400, interp: Interp = "log",
                 two_sided: bool = True) -> float:
    """The issue's error measure: the largest relative throughput difference between `approx` and `full`, in
    either direction, at any interactivity `full` covers (0 = the same frontier; 1 = `approx` does not reach
    some of it). A frontier drawn through fewer points can be too low (a skipped point was above the line)
    or too high (a skipped point was a vertex below the line the neighbours draw); both count, or with
    `two_sided=False` only the shortfall (throughput the full ladder found and the approximation misses)."""
    if not full.vertices:
        return 0.0
    lo, hi = full.vertices[0].x, full.vertices[-1].x
    xs = {p.x for p in full.vertices} | {p.x for p in approx.vertices if lo <= p.x <= hi}
    xs |= {lo * (hi / lo) ** (i / samples) for i in range(samples + 1)}
    worst = 0.0
    for x in xs:
        f = full.value(x, interp=interp)
        if f <= 0:
            continue
        diff = (f - approx.value(x, interp=interp)) / f
        worst = max(worst, abs(diff) if two_sided else diff)
    return worst


# --------------------------------------------------------------------------------------------- topologies
Mode = Literal["ladder", "range"]


@dataclass
class Topology:
    """One serve group of a scope as the policy sees it: its allowed concurrencies and what is known."""

    group_id: str
    label: str
    concs: tuple[int, ...]
    measured: dict[int, Observation] = field(default_factory=dict)
    prior: dict[int, Observation] = field(default_factory=dict)
    prior_source: str = ""
    prior_margin: float = 0.0
    mode: Mode = "ladder"

    def __post_init__(self) -> None:
        if not self.concs:
            raise ValueError(f"{self.group_id}: a topology needs at least one concurrency")
        self.concs = tuple(sorted(set(self.concs)))

    @property
    def allowed(self) -> tuple[int, ...]:
        """Concurrencies the policy may choose: the ladder, or every integer of [first, last] in range mode."""
        if self.mode == "range":
            return tuple(range(self.concs[0], self.concs[-1] + 1))
        return self.concs

    def ok_points(self) -> list[Observation]:
        """Measured points that succeeded, by ascending concurrency."""
        return [o for c, o in sorted(self.measured.items()) if o.ok]

    def frontier_points(self) -> list[FrontierPoint]:
        """This topology's measured points as frontier candidates."""
        return [FrontierPoint(o.x, o.y, self.label, o.conc) for o in self.ok_points()]


@dataclass(frozen=True)
class AdaptiveOptions:
    """The policy's knobs (the sweep file's `adaptive:` block, see config.adaptive)."""

    tolerance: float = 0.01
    noise: float = 0.03
    max_points: float | None = None
    group_skip: bool = True

    def budget(self, total: int) -> int:
        """Points the budget allows out of `total` (a fraction of the ladder when <= 1, else a count)."""
        if self.max_points is None:
            return total
        if self.max_points <= 1:
            return max(1, math.ceil(self.max_points * total))
        return int(self.max_points)


def _log_line(p: Observation, q: Observation) -> tuple[float, float] | None:
    """Slope and intercept of log y over log x through p and q (None when vertical)."""
    lpx, lqx = math.log(p.x), math.log(q.x)
    if lpx == lqx:
        return None
    slope = (math.log(q.y) - math.log(p.y)) / (lqx - lpx)
    return slope, math.log(p.y) - slope * lpx


def interval_bound(points: Sequence[Observation], i: int,
                   noise: float) -> tuple[float, float, Callable[[float], float]]:
    """The upper bound of the unmeasured points between `points[i]` and `points[i + 1]` (ascending
    concurrency, so descending interactivity): the x range and a function giving the bound at x.

    The sandwich is taken in log-log space, where a topology's curve is close to concave: its regimes
    (memory-bound at low concurrency, compute- or KV-bound at high) are power laws, i.e. straight lines
    there. In linear space the 8k1k curves were measured to bend the wrong way between regimes."""
    a, b = points[i], points[i + 1]  # a: lower conc (higher x), b: higher conc (higher y)
    x_lo, x_hi = min(a.x, b.x), max(a.x, b.x)
    lines = []
    if i + 2 < len(points):  # the segment past b, extended back over the interval
        line = _log_line(b, points[i + 2])
        if line is not None:
            lines.append(line)
    if i - 1 >= 0:  # the segment before a, extended forward over the interval
        line = _log_line(points[i - 1], a)
        if line is not None:
            lines.append(line)
    cap = math.log(max(a.y, b.y))
    chord = _log_line(a, b)
    floor = math.log(min(a.y, b.y))
    widen = math.log1p(noise)

    def bound(x: float) -> float:
        lx = math.log(x)
        y = cap
        for slope, icept in lines:
            y = min(y, slope * lx + icept)
        # Never below the chord: noise can make the extended neighbours cross under it.
        low = floor if chord is None else max(floor, chord[0] * lx + chord[1])
        return math.exp(max(y, low) + widen)

    return x_lo, x_hi, bound


def _ends(topology: Topology) -> tuple[int | None, int | None]:
    """The highest and the lowest allowed concurrency that has not failed (a failed top end, e.g. a KV-cache
    OOM, moves the end down to the next one)."""
    def usable(c: int) -> bool:
        return c not in topology.measured or topology.measured[c].ok

    allowed = topology.allowed  # every integer of the range in range mode: searched lazily from each end
    return (next((c for c in reversed(allowed) if usable(c)), None), next((c for c in allowed if usable(c)), None))


def ends_to_measure(topology: Topology) -> list[int]:
    """The end points still to measure, the top end first."""
    return list(dict.fromkeys(c for c in _ends(topology) if c is not None and c not in topology.measured))


# ------------------------------------------------------------------------------------------------ decisions
Action = Literal["measure", "skip", "skip-group"]


@dataclass(frozen=True)
class Decision:
    """What the policy decided for one point (conc 0: the whole topology), and why."""

    group_id: str
    conc: int
    action: Action
    reason: str
    gain: float | None = None

    def to_json(self) -> dict[str, object]:
        """For the store's `detail` and the run summary."""
        gain = None if self.gain is None or not math.isfinite(self.gain) else round(self.gain, 5)
        return {"group_id": self.group_id, "conc": self.conc, "action": self.action, "reason": self.reason,
                "gain": gain}


def _pct(value: float) -> str:
    return f"{abs(value) * 100:.1f}%"


@dataclass(frozen=True)
class Calibration:
    """How the priors of a scope compare with what it measured: the median measured/predicted ratio per
    axis, and the margin left for the priors' error once calibrated."""

    kx: float = 1.0
    ky: float = 1.0
    margin: float = 0.0
    n: int = 0


def calibrate(topologies: Sequence[Topology], noise: float) -> Calibration:
    """Scale the scope's priors to its measurements. A roofline model or an older image is usually off by
    a common factor (efficiency, a new kernel) while its shape across topologies and concurrencies holds,
    so after calibration the margin shrinks to the residual spread (never below twice the noise). With no
    measured point that has a prior, each prior keeps its own margin."""
    rx, ry = [], []
    for t in topologies:
        for c, o in t.measured.items():
            p = t.prior.get(c)
            if o.ok and p is not None and p.ok and p.x > 0 and p.y > 0 and o.x > 0 and o.y > 0:
                rx.append(math.log(o.x / p.x))
                ry.append(math.log(o.y / p.y))
    if not rx:
        return Calibration()
    mx, my = statistics.median(rx), statistics.median(ry)
    spread = max(max(abs(v - mx) for v in rx), max(abs(v - my) for v in ry))
    # With one or two calibration points the spread says little: keep at least half the prior's own margin.
    floor = 2 * noise if len(rx) >= 3 else max(2 * noise, 0.5 * max((t.prior_margin for t in topologies), default=0))
    return Calibration(kx=math.exp(mx), ky=math.exp(my), margin=max(floor, SPREAD_K * spread), n=len(rx))


@dataclass(frozen=True)
class PointBound:
    """The most an unmeasured point could be, the gain that would give the frontier, and where the bound
    came from (for the reason)."""

    topology: Topology
    conc: int
    gain: float
    x: float
    y: float
    sources: tuple[str, ...]
    predicted_gain: float = -math.inf


def _dominated(x: float, y: float, measured: Sequence[Observation]) -> bool:
    return any(m.x >= x and m.y >= y for m in measured)


def point_bound(topo: Topology, conc: int, frontier: Frontier, noise: float, cal: Calibration,
                measured: Sequence[Observation] = ()) -> PointBound:
    """Bound one unmeasured point from (1) the topology's measured neighbours (throughput grows and
    interactivity falls with concurrency), (2) the concave sandwich between them, (3) the calibrated prior.

    Its `gain` is how much the point could change the drawn frontier, either way: raise it (the upper end
    of its range is above the line) or pull it down (somewhere in its range it is below the line yet not
    dominated by any measured point `measured`, so it would be a vertex of the front)."""
    # Both the neighbour and the point itself carry run-to-run noise: allow for it twice.
    widen = 1.0 + 2 * noise
    ok = topo.ok_points()
    below = [o for o in ok if o.conc < conc]
    above = [o for o in ok if o.conc > conc]
    x_hi, y_hi = math.inf, math.inf
    x_lo, y_lo = 0.0, 0.0
    sources: list[str] = []
    if above:  # a higher concurrency of the same topology is at least as fast, and less interactive
        y_hi = min(o.y for o in above) * widen
        x_lo = max(o.x for o in above) / widen
        sources.append("measured neighbours")
    if below:  # ... and a lower one at least as interactive, and slower
        x_hi = min(o.x for o in below) * widen
        y_lo = max(o.y for o in below) / widen
    prior = topo.prior.get(conc)
    predicted = -math.inf
    own = calibrate([topo], noise)
    if own.n >= 2:  # the topology's own measurements calibrate its prior better than the scope's
        cal = own
    if prior is not None and prior.ok:
        margin = 1.0 + (cal.margin if cal.n else topo.prior_margin)
        px, py = prior.x * cal.kx, prior.y * cal.ky
        x_hi, y_hi = min(x_hi, px * margin), min(y_hi, py * margin)
        x_lo, y_lo = max(x_lo, px / margin), max(y_lo, py / margin)
        predicted = relative_gain(px, py, frontier)
        sources.append(f"{topo.prior_source} prior" + (" (calibrated)" if cal.n else ""))
    if not (math.isfinite(x_hi) and math.isfinite(y_hi)):
        return PointBound(topo, conc, math.inf, x_hi, y_hi, tuple(sources), predicted)
    gain = relative_gain(x_hi, y_hi, frontier)
    if below and above:  # tighter: the concave sandwich between the two measured neighbours
        i = ok.index(below[-1])
        x0, x1, bound = interval_bound(ok, i, noise)
        # Noise can put the point outside its neighbours' interactivity range: widen it as the box is.
        x0, x1 = x0 / widen, min(x1 * widen, x_hi)
        if x1 >= x0:
            xs = [x0 + (x1 - x0) * k / _GRID for k in range(_GRID + 1)]
            sandwich = max(relative_gain(x, min(bound(x), y_hi), frontier) for x in xs)
            if sandwich < gain:
                gain = sandwich
                sources.append("concave sandwich")
    if x_lo <= 0 or y_lo <= 0:
        dip = math.inf if not _dominated(x_hi, y_hi, measured) else 0.0
    else:  # the lower part of its range: below the line but not dominated would pull the front down
        dip = 0.0
        for k in range(_GRID + 1):
            t = k / _GRID
            qx, qy = x_lo * (x_hi / x_lo) ** t, y_lo * (y_hi / y_lo) ** t
            if not _dominated(qx, qy, measured):
                dip = max(dip, -relative_gain(qx, qy, frontier))
    if dip > max(gain, 0.0):
        return PointBound(topo, conc, dip, x_hi, y_hi, (*dict.fromkeys(sources), "could be a vertex below the line"),
                          predicted)
    return PointBound(topo, conc, gain, x_hi, y_hi, tuple(dict.fromkeys(sources)), predicted)


def explain(bound: PointBound, frontier: Frontier, tolerance: float) -> str:
    """Why a point is not worth measuring, naming the frontier that beats it and the bound's source."""
    how = " and ".join(bound.sources)
    if bound.gain < 0:
        left, right = frontier.neighbours(bound.x)
        boss = right if right is not None and right.y >= bound.y else None
        if boss is not None:
            return f"dominated by {boss.label} at conc {boss.conc} by >= {_pct(bound.gain)} ({how})"
        names = " and ".join(f"{p.label} at conc {p.conc}" for p in (left, right) if p is not None)
        return f"below the frontier through {names} by >= {_pct(bound.gain)} ({how})"
    return f"could move the frontier by at most {_pct(bound.gain)}, within the tolerance of {_pct(tolerance)} ({how})"


@dataclass
class Scope:
    """One config key and sequence length: its topologies and the decisions taken so far."""

    topologies: list[Topology]
    options: AdaptiveOptions = field(default_factory=AdaptiveOptions)
    decisions: list[Decision] = field(default_factory=list)
    skipped_groups: set[str] = field(default_factory=set)

    def topology(self, group_id: str) -> Topology:
        """The topology of a group id."""
        for t in self.topologies:
            if t.group_id == group_id:
                return t
        raise KeyError(group_id)

    def frontier(self) -> Frontier:
        """The frontier of everything measured so far."""
        return Frontier.of(p for t in self.topologies for p in t.frontier_points())

    @property
    def measured_count(self) -> int:
        """Points measured (failed ones included: they cost a server's time too)."""
        return sum(len(t.measured) for t in self.topologies)

    @property
    def ladder_count(self) -> int:
        """Points of the full ladder."""
        return sum(len(t.concs) for t in self.topologies)

    def measured_points(self) -> list[Observation]:
        """Every successful measured point of the scope."""
        return [o for t in self.topologies for o in t.ok_points()]

    def bounds(self, topologies: Iterable[Topology] | None = None) -> list[PointBound]:
        """The bound of every unmeasured ladder point (range mode: ends and interval midpoints)."""
        frontier = self.frontier()
        cal = calibrate(self.topologies, self.options.noise)
        measured = self.measured_points()
        out = []
        for topo in self.topologies if topologies is None else topologies:
            if topo.group_id in self.skipped_groups:
                continue
            for conc in _candidates(topo):
                out.append(point_bound(topo, conc, frontier, self.options.noise, cal, measured))
        return out


def _candidates(topo: Topology) -> list[int]:
    """Unmeasured concurrencies the policy weighs: the ladder's, or in range mode the ends and the geometric
    middle of every gap between measured concurrencies (bisection over the integers)."""
    if topo.mode == "ladder":
        return [c for c in topo.concs if c not in topo.measured]
    out = ends_to_measure(topo)
    done = sorted(topo.measured)
    for lo, hi in itertools.pairwise(done):
        inside = list(range(lo + 1, hi))
        if inside:
            target = math.sqrt(lo * hi)
            out.append(min(inside, key=lambda c: (abs(math.log(c / target)), c)))
    return out


def _priority(b: PointBound) -> tuple[float, float, int, int]:
    """Largest possible gain first; among unbounded points, the prior's most promising, then the top end
    (the fastest point of its topology), then the bottom end."""
    return (b.gain, b.predicted_gain, int(b.conc == _ends(b.topology)[0]), -b.conc)


def _pick(scope: Scope, bounds: list[PointBound]) -> Decision | None:
    tol = scope.options.tolerance
    cands = [b for b in bounds if b.gain > tol]
    if not cands:
        return None
    best = max(cands, key=_priority)
    if math.isinf(best.gain):
        why = "not bounded by anything measured yet" + (
            f" (prior predicts {best.predicted_gain * 100:+.1f}% against the frontier)"
            if math.isfinite(best.predicted_gain) else "")
    else:
        why = f"could move the frontier by up to {_pct(best.gain)} ({' and '.join(best.sources)})"
    return Decision(best.topology.group_id, best.conc, "measure", why, best.gain)


def group_skip(scope: Scope, topology: Topology) -> Decision | None:
    """Skip a whole topology before its server starts when no point of it can raise the measured frontier
    by more than the tolerance (only a prior can say so before anything of it is measured)."""
    if not scope.options.group_skip or topology.measured or not scope.frontier().vertices:
        return None
    bounds = scope.bounds([topology])
    if not bounds or any(b.gain > scope.options.tolerance for b in bounds):
        return None
    best = max(bounds, key=lambda b: b.gain)
    reason = explain(best, scope.frontier(), scope.options.tolerance) + " at its most promising concurrency"
    return Decision(topology.group_id, 0, "skip-group", reason, best.gain)


def next_for_topology(scope: Scope, group_id: str) -> Decision | None:
    """The next point one topology should measure, or None when none of its points can still raise the
    frontier by more than the tolerance; the DAG's benchmark step calls this between points."""
    return _pick(scope, scope.bounds([scope.topology(group_id)]))


def next_global(scope: Scope) -> Decision | None:
    """The next point of the whole scope (the replay's order, all topologies at once): topologies a prior
    shows dominated are skipped whole, then the point with the largest possible gain is measured."""
    for topo in scope.topologies:
        if topo.group_id in scope.skipped_groups:
            continue
        skip = group_skip(scope, topo)
        if skip is not None:
            scope.skipped_groups.add(topo.group_id)
            scope.decisions.append(skip)
    return _pick(scope, scope.bounds())


def close(scope: Scope, *, budget_spent: bool = False, only: str | None = None) -> list[Decision]:
    """Record a skip, with its reason, for every ladder point left unmeasured once the policy stops (of one
    topology with `only`)."""
    frontier = scope.frontier()
    tol = scope.options.tolerance
    cal = calibrate(scope.topologies, scope.options.noise)
    measured = scope.measured_points()
    out = []
    for topo in scope.topologies:
        if only is not None and topo.group_id != only:
            continue
        group_skipped = topo.group_id in scope.skipped_groups
        for conc in topo.concs:
            if conc in topo.measured:
                continue
            b = point_bound(topo, conc, frontier, scope.options.noise, cal, measured)
            if group_skipped:
                reason = "its topology was skipped whole: " + explain(b, frontier, tol)
            elif b.gain > tol:
                bound = "unbounded" if math.isinf(b.gain) else f"up to {_pct(b.gain)}"
                reason = f"point budget spent ({scope.measured_count} of {scope.ladder_count} points); it could " \
                         f"move the frontier by {bound}"
            else:
                reason = explain(b, frontier, tol)
            out.append(Decision(topo.group_id, conc, "skip", reason, b.gain))
    scope.decisions.extend(out)
    return out


@dataclass(frozen=True)
class ReplayResult:
    """What an adaptive replay measured against the full ladder of the same recorded points."""

    measured: int
    total: int
    gpu_s: float
    total_gpu_s: float
    gap: float
    decisions: tuple[Decision, ...]
    gap_linear: float = 0.0
    shortfall: float = 0.0

    @property
    def fraction(self) -> float:
        """Points measured / points of the ladder."""
        return self.measured / self.total if self.total else 0.0

    @property
    def gpu_fraction(self) -> float:
        """GPU-seconds spent / GPU-seconds of the ladder."""
        return self.gpu_s / self.total_gpu_s if self.total_gpu_s else 0.0


def replay(
    ladders: Mapping[str, tuple[str, Mapping[int, Observation]]],
    *,
    options: AdaptiveOptions | None = None,
    priors: Mapping[str, tuple[str, float, Mapping[int, Observation]]] | None = None,
    mode: Mode = "ladder",
) -> ReplayResult:
    """Run the policy against recorded full-ladder measurements: `ladders` maps a group id to its label
    and every concurrency's observation (the policy only sees those it asks for); `priors` maps a group id
    to (source, margin, predicted observations). Returns the points used and the frontier error."""
    options = options or AdaptiveOptions()
    priors = priors or {}
    topologies = []
    for gid, (label, points) in ladders.items():
        source, margin, prior = priors.get(gid, ("", 0.0, {}))
        topologies.append(Topology(gid, label, tuple(points), prior=dict(prior), prior_source=source,
                                   prior_margin=margin, mode=mode))
    scope = Scope(topologies, options)
    budget = options.budget(scope.ladder_count)
    budget_spent = False
    while True:
        if scope.measured_count >= budget:
            budget_spent = any(b.gain > options.tolerance for b in scope.bounds())
            break
        step = next_global(scope)
        if step is None:
            break
        topo = scope.topology(step.group_id)
        recorded = ladders[step.group_id][1]
        obs = recorded.get(step.conc)
        if obs is None:  # range mode asked for a concurrency the recording does not have
            raise KeyError(f"{step.group_id}: no recorded point at conc {step.conc}")
        topo.measured[step.conc] = obs
        scope.decisions.append(step)
    close(scope, budget_spent=budget_spent)
    full = Frontier.of(FrontierPoint(o.x, o.y, label, c) for label, pts in ladders.values()
                       for c, o in pts.items() if o.ok)
    total_gpu_s = sum(o.gpu_s for _label, pts in ladders.values() for o in pts.values())
    return ReplayResult(
        measured=scope.measured_count, total=scope.ladder_count,
        gpu_s=sum(o.gpu_s for t in scope.topologies for o in t.measured.values()), total_gpu_s=total_gpu_s,
        gap=frontier_gap(full, scope.frontier()), decisions=tuple(scope.decisions),
        gap_linear=frontier_gap(full, scope.frontier(), interp="linear"),
        shortfall=frontier_gap(full, scope.frontier(), two_sided=False),
    )
