"""Noise bands: how much a metric moves between runs of the same point when nothing changed.

The gate only calls a drop a regression when it exceeds the band. The band comes, in order of trust:

1. **repeats**: several samples of the point within the compared runs (retries, repeated runs of the
   same image). Their pooled relative standard deviation is the most direct noise estimate.
2. **history**: earlier runs of the same point. Those span images too, so one real step change could
   inflate a plain standard deviation; a MAD-based robust sigma ignores such outliers.
3. **floor**: with too little data, or when the estimate is tighter than the floor (default 5 %), the
   floor wins. Benchmarks on shared machines are never reproducible to better than a few percent.

The band is `max(floor, k * sigma_rel)`; k = 3 makes a false alarm on a normal spread rare.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

DEFAULT_FLOOR = 0.05
DEFAULT_K = 3.0
#: Fewer historical samples than this say nothing reliable about the spread.
MIN_HISTORY = 3
#: Scale factor turning a median absolute deviation into a normal-consistent sigma.
MAD_TO_SIGMA = 1.4826

Source = Literal["repeats", "history", "floor"]


@dataclass(frozen=True)
class NoiseBand:
    """A relative band (0.05 = ±5 %) and where it came from."""

    rel: float
    source: Source
    n: int
    sigma_rel: float | None = None

    def describe(self) -> str:
        """E.g. `±7.5% (repeats, n=4)`."""
        return f"±{self.rel * 100:.1f}% ({self.source}, n={self.n})"


def _clean(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def pooled_relative_sigma(groups: Sequence[Sequence[float | None]]) -> tuple[float, int] | None:
    """Pooled relative standard deviation of several groups of repeats, and the sample count.

    Each group is one side of a comparison (one image); their means may differ, so residuals are taken
    from each group's own mean and divided by it before pooling. None when no group has two samples.
    """
    squares = 0.0
    dof = 0
    n = 0
    for group in groups:
        values = _clean(group)
        if len(values) < 2:
            continue
        mean = statistics.fmean(values)
        if mean == 0:
            continue
        squares += sum(((v - mean) / mean) ** 2 for v in values)
        dof += len(values) - 1
        n += len(values)
    if dof == 0:
        return None
    return math.sqrt(squares / dof), n


def robust_relative_sigma(values: Sequence[float | None]) -> float | None:
    """MAD-based sigma divided by the median (None for fewer than MIN_HISTORY values or a zero median)."""
    clean = _clean(values)
    if len(clean) < MIN_HISTORY:
        return None
    med = statistics.median(clean)
    if med == 0:
        return None
    mad = statistics.median(abs(v - med) for v in clean)
    return MAD_TO_SIGMA * mad / abs(med)


def noise_band(
    repeats: Sequence[Sequence[float | None]] = (),
    history: Sequence[float | None] = (),
    *,
    floor: float = DEFAULT_FLOOR,
    k: float = DEFAULT_K,
) -> NoiseBand:
    """The band for one metric of one point: repeats if any, else history, never below `floor`."""
    if floor < 0 or k <= 0:
        raise ValueError(f"noise_band: floor must be >= 0 and k > 0 (got floor={floor}, k={k})")
    pooled = pooled_relative_sigma(repeats)
    if pooled is not None:
        sigma, n = pooled
        return NoiseBand(rel=max(floor, k * sigma), source="repeats", n=n, sigma_rel=sigma)
    sigma_h = robust_relative_sigma(history)
    if sigma_h is not None:
        return NoiseBand(rel=max(floor, k * sigma_h), source="history", n=len(_clean(history)), sigma_rel=sigma_h)
    return NoiseBand(rel=floor, source="floor", n=0)
