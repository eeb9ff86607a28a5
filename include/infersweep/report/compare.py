"""Pairing two result sets (two runs, or two images) point by point.

Points pair on (config identity, isl, osl, conc): same engine kind, config key, model, runner,
framework, precision, spec decoding and topology. Image and run are what differ. A side may hold
several samples of a point (a retried point, the same image run twice); they are kept as repeats, the
side's value is their median, and the spread feeds the noise band.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from infersweep.report.data import ReportPoint, point_label


@dataclass(frozen=True)
class PairedPoint:
    """All samples of one point on each side of a comparison."""

    key: tuple[object, ...]
    base: tuple[ReportPoint, ...] = ()
    head: tuple[ReportPoint, ...] = ()

    @property
    def any(self) -> ReportPoint:
        """A representative sample (for labels and identity)."""
        return (self.head or self.base)[0]

    @property
    def label(self) -> str:
        """Human-readable identity."""
        return point_label(self.any)

    # cached_property works on this frozen dataclass (it writes the instance __dict__ directly); the gate
    # reads these once per metric, and recomputing them dominated gate time at fleet size.
    @cached_property
    def base_ok(self) -> tuple[ReportPoint, ...]:
        """Successful base samples."""
        return tuple(p for p in self.base if p.ok)

    @cached_property
    def head_ok(self) -> tuple[ReportPoint, ...]:
        """Successful head samples."""
        return tuple(p for p in self.head if p.ok)

    @cached_property
    def status(self) -> str:
        """`paired`, `new` (head only), `missing` (base only), `failed` (base ok, head only failures),
        `fixed` (base only failures, head ok) or `both-failed`."""
        if not self.base:
            return "new"
        if not self.head:
            return "missing"
        b, h = bool(self.base_ok), bool(self.head_ok)
        if b and h:
            return "paired"
        if b:
            return "failed"
        if h:
            return "fixed"
        return "both-failed"

    def values(self, metric: str, side: str) -> list[float]:
        """The metric's values over the side's successful samples."""
        points = self.base_ok if side == "base" else self.head_ok
        return [v for v in (getattr(p, metric) for p in points) if v is not None]

    def value(self, metric: str, side: str) -> float | None:
        """The side's value of a metric: the median of its successful samples."""
        vals = self.values(metric, side)
        return statistics.median(vals) if vals else None

    def head_failure(self) -> str | None:
        """The failure class of the head's latest failed sample (for `failed` rows)."""
        failed = [p for p in self.head if p.status != "ok"]
        return (failed[-1].failure_kind or "unknown") if failed else None


@dataclass
class Comparison:
    """Every point of both sides, paired, plus the selectors that produced them."""

    base_label: str
    head_label: str
    pairs: list[PairedPoint] = field(default_factory=list)

    @property
    def paired(self) -> list[PairedPoint]:
        """Pairs with a successful sample on both sides."""
        return [p for p in self.pairs if p.status == "paired"]


def pair_points(base: Iterable[ReportPoint], head: Iterable[ReportPoint]) -> list[PairedPoint]:
    """Pair two result sets by `ReportPoint.point_key`; ordered by (model, isl, osl, config, conc)."""
    sides: dict[tuple[object, ...], dict[str, list[ReportPoint]]] = defaultdict(lambda: {"base": [], "head": []})
    for p in base:
        sides[p.point_key]["base"].append(p)
    for p in head:
        sides[p.point_key]["head"].append(p)
    pairs = [PairedPoint(key=k, base=tuple(v["base"]), head=tuple(v["head"])) for k, v in sides.items()]

    def order(pair: PairedPoint) -> tuple[object, ...]:
        p = pair.any
        return (p.engine_kind, p.model, p.isl, p.osl, p.config_key, p.topology, p.series_label, p.conc)

    pairs.sort(key=order)
    return pairs


def compare(base: Iterable[ReportPoint], head: Iterable[ReportPoint], *, base_label: str = "base",
            head_label: str = "head") -> Comparison:
    """A `Comparison` of two result sets."""
    return Comparison(base_label=base_label, head_label=head_label, pairs=pair_points(base, head))


def relative_delta(base: float | None, head: float | None) -> float | None:
    """(head - base) / |base|, or None when either is missing or base is zero."""
    if base is None or head is None or base == 0:
        return None
    return (head - base) / abs(base)
