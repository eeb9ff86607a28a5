"""Noise bands: how much a metric moves between runs of the same point when nothing changed.

The gate only calls a drop a regression when it exceeds the band. The band comes, in order of trust:

1. **repeats**: several samples of the point within the compared runs (retries, repeated runs of the
   same image). Their pooled relative standard deviation is the most direct noise estimate.
2. **history**: earlier runs of the same point. Those span images too, so one real step change could
   inflate a plain standard deviation; a MAD-based robust sigma ignores such outliers.
3. **floor**: with too little data, or when the estimate is tighter than the floor (default 5 %), the
   floor wins. Benchmarks on shared machines are never reproducible to better than a few percent.

The band is `max(floor, k * sigma_rel)`; k = 3 makes a false alarm on a normal spread rare.

**With confidence intervals** on both sides (`interval_verdict`), the gate asks the intervals instead: the
change is measured as the log-ratio L = ln(head / base), whose standard error combines both sides' standard
errors (each recovered from its interval: half-width over the interval's critical value, relative to its
value): se_L = sqrt((se_b / b)² + (se_h / h)²), with Welch–Satterthwaite degrees of freedom when a side's
interval is a Student-t one over few repeats. A point regresses only when the two-sided `level` interval of
the relative change, exp(L ± t·se_L) − 1, lies entirely beyond the floor in the bad direction (a drop of
more than `floor` for a throughput, a rise of more than `floor` for a latency), which is a one-sided test
at (1 + level) / 2. The reported `confidence` is that one-sided probability, P(the true change is worse than
the floor), from the t (or normal) distribution of L. Improvements are judged the same way.

A within-run bootstrap interval (a point measured once) does not contain run-to-run noise, so when either
side's interval is one, the run-to-run variance known from the band's repeats or history (2·sigma_rel²,
one run per side) is added to se_L, and the change must also exceed the noise band as without intervals:
the intervals can then only make the gate stricter about what it calls a regression, never looser.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from infersweep.bench.intervals import METHOD_STUDENT_T, Interval, t_cdf, t_ppf

DEFAULT_FLOOR = 0.05
DEFAULT_K = 3.0
#: Two-sided level of the relative-change interval the interval-aware gate decides on.
DEFAULT_LEVEL = 0.95
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


@dataclass(frozen=True)
class IntervalJudgement:
    """What the intervals say about one metric's change: verdict, the one-sided confidence that the change
    is a regression beyond the floor, and the `level` interval of the relative change (head − base) / base."""

    verdict: Literal["regression", "improvement", "ok"]
    confidence: float
    rel_lo: float
    rel_hi: float
    level: float
    within_run: bool  # a side's interval is a within-run bootstrap (run-to-run noise added from the band)


def side_interval(samples: Sequence[tuple[float, Interval | None]], level: float = DEFAULT_LEVEL) -> Interval | None:
    """The interval of one side's value from its samples `(value, interval or None)`: the single sample's
    own interval, or, with several samples, a Student-t interval across their values (they are repeats).
    None when no sample carries an interval."""
    if not any(iv is not None for _, iv in samples):
        return None
    if len(samples) == 1:
        return samples[0][1]
    from infersweep.bench.intervals import repeat_intervals

    values = [v for v, _ in samples if math.isfinite(v)]
    return repeat_intervals(values, level) if len(values) >= 2 else None


def _welch_dof(parts: Sequence[tuple[float, float]]) -> float:
    """Welch–Satterthwaite degrees of freedom of a sum of variances `(variance, dof)` (inf dof: exact)."""
    total = sum(v for v, _ in parts)
    denom = sum(v * v / d for v, d in parts if math.isfinite(d) and d > 0)
    if total <= 0 or denom <= 0:
        return math.inf
    return total * total / denom


def interval_verdict(
    base: float,
    head: float,
    base_iv: Interval,
    head_iv: Interval,
    *,
    higher_is_better: bool,
    band: NoiseBand,
    floor: float = DEFAULT_FLOOR,
    level: float = DEFAULT_LEVEL,
) -> IntervalJudgement | None:
    """Judge one metric's change from both sides' confidence intervals (see the module docstring).

    None when the change cannot be judged this way (a non-positive value): the caller falls back to the
    band alone.
    """
    if not (base > 0 and head > 0 and math.isfinite(base) and math.isfinite(head)):
        return None
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    log_ratio = math.log(head / base)
    parts = [((base_iv.std_error / base) ** 2, base_iv.dof), ((head_iv.std_error / head) ** 2, head_iv.dof)]
    within = base_iv.method != METHOD_STUDENT_T or head_iv.method != METHOD_STUDENT_T
    if within and band.sigma_rel is not None:
        # Two independent runs, each off by the run-to-run noise the band measured (repeats or history).
        sigma_log = math.log1p(band.sigma_rel)
        parts.append((2.0 * sigma_log * sigma_log, float(max(band.n - 1, 1)) if band.source == "repeats" else math.inf))
    var = sum(v for v, _ in parts)
    se = math.sqrt(var)
    dof = _welch_dof(parts)
    # Thresholds on the log scale for "worse than the floor" and "better than the floor".
    worse, better = (-math.log1p(-min(floor, 0.999)), math.log1p(floor))
    if not higher_is_better:
        worse, better = better, worse
    badness = -log_ratio if higher_is_better else log_ratio
    if se > 0:
        confidence = t_cdf((badness - worse) / se, dof)
        conf_better = t_cdf((-badness - better) / se, dof)
        crit = t_ppf((1.0 + level) / 2.0, dof)
    else:
        confidence = 1.0 if badness > worse else 0.0
        conf_better = 1.0 if -badness > better else 0.0
        crit = 0.0
    rel_lo, rel_hi = math.expm1(log_ratio - crit * se), math.expm1(log_ratio + crit * se)
    one_sided = (1.0 + level) / 2.0
    # The band check of the gate without intervals (same scale: relative change), needed for within-run
    # intervals, which are blind to run-to-run noise.
    rel_bad = (base - head) / base if higher_is_better else (head - base) / base
    verdict: Literal["regression", "improvement", "ok"] = "ok"
    if confidence >= one_sided and (not within or rel_bad > band.rel):
        verdict = "regression"
    elif conf_better >= one_sided and (not within or -rel_bad > band.rel):
        verdict = "improvement"
    return IntervalJudgement(verdict=verdict, confidence=confidence, rel_lo=rel_lo, rel_hi=rel_hi, level=level,
                             within_run=within)
