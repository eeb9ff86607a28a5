"""Prometheus text for `/metrics`: vLLM's names for engine state, `sim:` names for modelled GPU figures.

Latency histograms are in simulated seconds (wall seconds × time scale). GPU power and utilisation are
modelled from the step timeline, never measured, and every such series carries `simulated="true"`.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from dataclasses import dataclass, field

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
                    10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)


@dataclass
class Histogram:
    """A cumulative Prometheus histogram."""

    buckets: tuple[float, ...] = _LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.total += value
        self.n += 1

    def render(self, name: str, labels: str) -> list[str]:
        out, cum = [], 0
        for le, c in zip(self.buckets, self.counts, strict=True):
            cum += c
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {cum}')
        out.append(f'{name}_bucket{{{labels},le="+Inf"}} {self.n}')
        out.append(f"{name}_sum{{{labels}}} {self.total}")
        out.append(f"{name}_count{{{labels}}} {self.n}")
        return out


class PowerModel:
    """Modelled GPU utilisation and power over the last second of wall time.

    utilisation = busy fraction of the window (like nvidia-smi's "GPU-Util": a kernel was running);
    power = idle + (TDP − idle) × utilisation × (0.6 + 0.4 × compute-boundness of the busy steps).
    Idle is 15 % of TDP. A rough but monotone model: memory-bound decode draws less than compute-bound
    prefill, and an idle engine sits near idle power.
    """

    WINDOW_S = 1.0
    IDLE_FRACTION = 0.15

    def __init__(self, tdp_w: float, time_scale: float) -> None:
        self.tdp_w = tdp_w
        self.time_scale = time_scale
        self._steps: deque[tuple[float, float, float]] = deque()  # (wall end, wall duration, compute frac)

    def record(self, wall_end: float, sim_duration_s: float, compute_fraction: float) -> None:
        self._steps.append((wall_end, sim_duration_s / self.time_scale, compute_fraction))

    def sample(self, now: float | None = None) -> tuple[float, float]:
        """(utilisation 0..1, power W) over the last second."""
        now = time.perf_counter() if now is None else now
        lo = now - self.WINDOW_S
        steps = self._steps
        while steps and steps[0][0] < lo:
            steps.popleft()
        busy = sum(min(d, end - lo) for end, d, _ in steps)
        util = min(1.0, busy / self.WINDOW_S)
        cf = (sum(d * c for _, d, c in steps) / busy) if busy > 0 else 0.0
        idle = self.IDLE_FRACTION * self.tdp_w
        return util, idle + (self.tdp_w - idle) * util * (0.6 + 0.4 * cf)
