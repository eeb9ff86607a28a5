"""The regression gate: which points got worse beyond their noise band.

Per paired point and gated metric, the relative change `(head - base) / base` is turned into a
"badness" by the metric's direction (a throughput drop and a latency rise are both positive). The point
regresses when the badness exceeds the point's noise band for that metric (see `report.noise`). A point
that succeeded on the base and only fails on the head is a regression too: a crash is the largest drop.
Points present on one side only are listed (`new`, `missing`) but do not fail the gate, because a sweep
filtered to a subset is not a regression.

When both sides carry confidence intervals for a metric (`ReportPoint.intervals`, metric → `Interval`
JSON), the intervals decide instead (`report.noise.interval_verdict`): the point regresses only when the
`level` interval of the relative change lies entirely beyond the floor, and each metric reports its
`confidence` (one-sided probability that the change is worse than the floor) and that `interval`. Without
intervals on both sides the verdict is exactly the band rule above.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from infersweep.bench.intervals import Interval
from infersweep.report.compare import Comparison, PairedPoint, relative_delta
from infersweep.report.data import ReportPoint
from infersweep.report.metrics import DEFAULT_GATE_METRICS, metric
from infersweep.report.noise import (
    DEFAULT_FLOOR,
    DEFAULT_K,
    DEFAULT_LEVEL,
    IntervalJudgement,
    NoiseBand,
    interval_verdict,
    noise_band,
    side_interval,
)

Verdict = Literal["regression", "improvement", "ok", "failed", "fixed", "both-failed", "new", "missing", "no-data"]

#: Verdicts that fail the gate.
FAILING: frozenset[str] = frozenset({"regression", "failed"})

EXIT_OK = 0
EXIT_REGRESSION = 1
#: Nothing comparable: the gate cannot vouch for anything, so it must not pass silently.
EXIT_NO_DATA = 2


def decide(base: float | None, head: float | None, *, higher_is_better: bool, band: float) -> Verdict:
    """Verdict for one metric of one point: regression / improvement beyond `band`, else ok."""
    rel = relative_delta(base, head)
    if rel is None:
        return "no-data"
    badness = -rel if higher_is_better else rel
    if badness > band:
        return "regression"
    if -badness > band:
        return "improvement"
    return "ok"


@dataclass(frozen=True)
class MetricDelta:
    """One metric of one paired point."""

    metric: str
    base: float | None
    head: float | None
    rel: float | None
    band: NoiseBand
    verdict: Verdict
    #: With intervals on both sides: P(the true change is worse than the floor), one-sided.
    confidence: float | None = None
    #: With intervals on both sides: the `level` interval of the relative change (head − base) / base.
    interval: tuple[float, float] | None = None
    level: float | None = None

    def describe_change(self) -> str:
        """E.g. `-20.0% beyond ±5.0% (floor, n=0)`, or with intervals `-20.0% (95% CI -24.1%..-15.8%,
        P(worse than floor) 0.999)`."""
        rel = f"{self.rel * 100:+.1f}%" if self.rel is not None else "n/a"
        if self.interval is None or self.confidence is None:
            return f"{rel} beyond {self.band.describe()}"
        lo, hi = self.interval
        return (f"{rel} ({(self.level or DEFAULT_LEVEL) * 100:.0f}% CI {lo * 100:+.1f}%..{hi * 100:+.1f}%, "
                f"P(worse than floor) {self.confidence:.3f})")


@dataclass(frozen=True)
class GateRow:
    """One point: its overall verdict and the per-metric deltas behind it."""

    pair: PairedPoint
    verdict: Verdict
    deltas: tuple[MetricDelta, ...] = ()
    note: str = ""

    @property
    def label(self) -> str:
        """The point's identity."""
        return self.pair.label

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for the report DAG's XCom and `--json`)."""
        p = self.pair.any
        return {
            "point": self.label,
            "config_key": p.config_key,
            "isl": p.isl,
            "osl": p.osl,
            "conc": p.conc,
            "topology": p.topology,
            "verdict": self.verdict,
            "note": self.note,
            "metrics": {
                d.metric: {"base": d.base, "head": d.head, "rel": d.rel, "band": d.band.rel,
                           "band_source": d.band.source, "verdict": d.verdict, "confidence": d.confidence,
                           "interval": list(d.interval) if d.interval is not None else None}
                for d in self.deltas
            },
        }


@dataclass
class GateResult:
    """All rows of a gate run; `exit_code` is what `--fail-on-regression` exits with."""

    base_label: str
    head_label: str
    metrics: tuple[str, ...]
    rows: list[GateRow] = field(default_factory=list)

    @property
    def regressions(self) -> list[GateRow]:
        """Rows that fail the gate."""
        return [r for r in self.rows if r.verdict in FAILING]

    @property
    def compared(self) -> int:
        """Points with a verdict on both sides (paired, failed or fixed)."""
        return sum(r.verdict not in {"new", "missing", "both-failed"} for r in self.rows)

    @property
    def exit_code(self) -> int:
        """0 pass, 1 regressions, 2 nothing comparable."""
        if self.regressions:
            return EXIT_REGRESSION
        return EXIT_OK if self.compared else EXIT_NO_DATA

    def summary(self) -> str:
        """One line: counts per verdict."""
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.verdict] = counts.get(r.verdict, 0) + 1
        parts = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        status = {EXIT_OK: "PASS", EXIT_REGRESSION: "FAIL", EXIT_NO_DATA: "NO DATA"}[self.exit_code]
        return f"gate {status}: {self.head_label} vs {self.base_label}: {len(self.rows)} points ({parts or 'none'})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "base": self.base_label,
            "head": self.head_label,
            "metrics": list(self.metrics),
            "exit_code": self.exit_code,
            "regressions": len(self.regressions),
            "summary": self.summary(),
            "rows": [r.to_dict() for r in self.rows],
        }


def _history_values(history: Sequence[ReportPoint], name: str) -> list[float | None]:
    return [getattr(p, name) for p in history if p.ok]


def _point_interval(p: ReportPoint, name: str) -> Interval | None:
    """The stored interval of one metric of one sample (None when absent or malformed: then the band
    rule applies)."""
    raw = p.intervals.get(name)
    if not isinstance(raw, dict):
        return None
    try:
        return Interval.from_json(raw)
    except (KeyError, TypeError, ValueError):
        return None


def _side_interval(pair: PairedPoint, name: str, side: str, level: float) -> Interval | None:
    points = pair.base_ok if side == "base" else pair.head_ok
    samples = [(float(v), _point_interval(p, name)) for p in points if (v := getattr(p, name)) is not None]
    if not samples:
        return None
    return side_interval(samples, level)


def _judge_with_intervals(pair: PairedPoint, name: str, base: float | None, head: float | None, *,
                          higher_is_better: bool, band: NoiseBand, floor: float,
                          level: float) -> IntervalJudgement | None:
    if base is None or head is None:
        return None
    b_iv, h_iv = _side_interval(pair, name, "base", level), _side_interval(pair, name, "head", level)
    if b_iv is None or h_iv is None:
        return None
    return interval_verdict(base, head, b_iv, h_iv, higher_is_better=higher_is_better, band=band, floor=floor,
                            level=level)


def judge_pair(
    pair: PairedPoint,
    *,
    metrics: Sequence[str] = DEFAULT_GATE_METRICS,
    history: Sequence[ReportPoint] = (),
    floor: float = DEFAULT_FLOOR,
    k: float = DEFAULT_K,
    level: float = DEFAULT_LEVEL,
) -> GateRow:
    """The verdict for one paired point (interval-aware per metric when both sides carry intervals)."""
    status = pair.status
    if status == "failed":
        kind = pair.head_failure()
        return GateRow(pair=pair, verdict="failed", note=f"base ok, head failed ({kind})")
    if status in {"new", "missing", "fixed", "both-failed"}:
        return GateRow(pair=pair, verdict=status)  # type: ignore[arg-type]
    deltas = []
    for name in metrics:
        spec = metric(name)
        band = noise_band(
            repeats=[pair.values(name, "base"), pair.values(name, "head")],
            history=_history_values(history, name),
            floor=floor,
            k=k,
        )
        base, head = pair.value(name, "base"), pair.value(name, "head")
        judged = _judge_with_intervals(pair, name, base, head, higher_is_better=spec.higher_is_better, band=band,
                                       floor=floor, level=level)
        if judged is None:
            verdict = decide(base, head, higher_is_better=spec.higher_is_better, band=band.rel)
            deltas.append(MetricDelta(name, base, head, relative_delta(base, head), band, verdict))
        else:
            deltas.append(MetricDelta(name, base, head, relative_delta(base, head), band, judged.verdict,
                                      confidence=judged.confidence, interval=(judged.rel_lo, judged.rel_hi),
                                      level=judged.level))
    verdicts = {d.verdict for d in deltas}
    overall: Verdict
    if "regression" in verdicts:
        overall = "regression"
    elif "improvement" in verdicts:
        overall = "improvement"
    elif verdicts == {"no-data"}:
        overall = "no-data"
    else:
        overall = "ok"
    worst = [d for d in deltas if d.verdict == "regression"]
    note = "; ".join(f"{metric(d.metric).label} {d.describe_change()}" for d in worst if d.rel is not None)
    return GateRow(pair=pair, verdict=overall, deltas=tuple(deltas), note=note)


def run_gate(
    comparison: Comparison,
    *,
    metrics: Sequence[str] = DEFAULT_GATE_METRICS,
    history: Mapping[tuple[object, ...], Sequence[ReportPoint]] | None = None,
    floor: float = DEFAULT_FLOOR,
    k: float = DEFAULT_K,
    level: float = DEFAULT_LEVEL,
) -> GateResult:
    """Judge every pair of a comparison. `history` maps point keys to earlier samples of that point;
    `level` is the two-sided level of the relative-change interval when points carry intervals."""
    for name in metrics:
        metric(name)  # fail early on a typo, before any row is judged
    history = history or {}
    rows = [
        judge_pair(pair, metrics=metrics, history=history.get(pair.key, ()), floor=floor, k=k, level=level)
        for pair in comparison.pairs
    ]
    return GateResult(base_label=comparison.base_label, head_label=comparison.head_label,
                      metrics=tuple(metrics), rows=rows)


def group_history(points: Iterable[ReportPoint]) -> dict[tuple[object, ...], list[ReportPoint]]:
    """Index historical points by their pairing key."""
    out: dict[tuple[object, ...], list[ReportPoint]] = {}
    for p in points:
        out.setdefault(p.point_key, []).append(p)
    return out
