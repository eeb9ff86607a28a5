"""SLO search: the largest concurrency of a topology that meets latency targets, by bisection.

vLLM's `bench sweep serve_sla` searches one server's load for an SLA; this does the same per topology,
inside the DAG, over the topology's ladder (or any integer of its range). Latency grows with concurrency,
so the passing concurrencies form a prefix of the ladder and bisection finds its last one in
ceil(log2(n + 1)) points. Throughput per GPU grows with concurrency too, so that point is the topology's
best throughput under the SLO; across topologies the best of them is the scope's "max goodput under SLO".

A failed point (the server could not serve that load) fails the SLO. Noise near a target can make the
prefix ragged; the search reports the boundary it proved (a passing point with a failing one right above).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


def meets(metrics: Mapping[str, float | None] | None, targets: Mapping[str, float]) -> tuple[bool, str]:
    """Whether a point's metrics meet every target, and the first violation in words."""
    if metrics is None:
        return False, "the point failed"
    for name, limit in targets.items():
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            return False, f"{name} missing"
        if value > limit:
            return False, f"{name} {value:,.1f} > {limit:,.1f}"
    return True, ""


@dataclass
class SloSearch:
    """Bisection over one topology's allowed concurrencies; feed it each measured point with `record`."""

    concs: tuple[int, ...]
    targets: Mapping[str, float]
    range_mode: bool = False
    results: dict[int, tuple[bool, str]] = field(default_factory=dict)
    tput: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.concs:
            raise ValueError("SLO search needs at least one concurrency")
        if not self.targets:
            raise ValueError("SLO search needs at least one target")
        self.concs = tuple(sorted(set(self.concs)))

    @property
    def allowed(self) -> tuple[int, ...]:
        """The ladder, or every integer in its range."""
        return tuple(range(self.concs[0], self.concs[-1] + 1)) if self.range_mode else self.concs

    def _bracket(self) -> tuple[int, int]:
        """Indices (into `allowed`) of the highest known pass below the lowest known fail: -1 / len = none."""
        allowed = self.allowed
        hi = min((i for i, c in enumerate(allowed) if c in self.results and not self.results[c][0]),
                 default=len(allowed))
        # A pass above a fail (noise near a target) does not move the bracket past the fail.
        lo = max((i for i, c in enumerate(allowed[:hi]) if self.results.get(c, (False, ""))[0]), default=-1)
        return lo, hi

    def next(self) -> int | None:
        """The next concurrency to measure, or None once the boundary is known."""
        lo, hi = self._bracket()
        if hi - lo <= 1:
            return None
        allowed = self.allowed
        if self.range_mode:  # geometric middle: latency responds to concurrency multiplicatively
            a = allowed[lo] if lo >= 0 else allowed[0] - 1
            b = allowed[hi] if hi < len(allowed) else allowed[-1] + 1
            target = math.sqrt(max(a, 1) * b)
            inside = allowed[lo + 1:hi]
            return min(inside, key=lambda c: (abs(math.log(c / target)), c))
        return allowed[(lo + hi) // 2]

    def record(self, conc: int, metrics: Mapping[str, float | None] | None, tput_per_gpu: float | None = None) -> None:
        """A measured point (None: it failed)."""
        self.results[conc] = meets(metrics, self.targets)
        if metrics is not None and tput_per_gpu is not None:
            self.tput[conc] = tput_per_gpu

    @property
    def best(self) -> int | None:
        """The largest concurrency proven to meet the SLO (None: not even the lowest does)."""
        lo, _hi = self._bracket()
        return self.allowed[lo] if lo >= 0 else None

    @property
    def best_tput(self) -> float | None:
        """Throughput per GPU at `best`: the topology's max goodput under the SLO."""
        best = self.best
        return self.tput.get(best) if best is not None else None

    def skip_reason(self, conc: int) -> str:
        """Why an unmeasured ladder point was not needed."""
        lo, hi = self._bracket()
        allowed = self.allowed
        i = allowed.index(conc)
        if hi < len(allowed) and i > hi:
            return f"above conc {allowed[hi]}, which misses the SLO ({self.results[allowed[hi]][1]})"
        if lo >= 0 and i < lo:
            return f"below conc {allowed[lo]}, which meets the SLO with more throughput"
        return "not needed to find the SLO boundary"


def slo_search(concs: Sequence[int], targets: Mapping[str, float],
               measure: object, *, range_mode: bool = False) -> SloSearch:
    """Run a search to the end with `measure(conc) -> (metrics | None, tput_per_gpu)` (replays, tests)."""
    search = SloSearch(tuple(concs), targets, range_mode=range_mode)
    while (conc := search.next()) is not None:
        metrics, tput = measure(conc)  # type: ignore[operator]
        search.record(conc, metrics, tput)
    return search


def ladder_answer(points: Mapping[int, Mapping[str, float | None] | None], targets: Mapping[str, float]) -> int | None:
    """What the full ladder says: the largest measured concurrency below the first one that misses."""
    best = None
    for conc in sorted(points):
        ok, _why = meets(points[conc], targets)
        if not ok:
            break
        best = conc
    return best
