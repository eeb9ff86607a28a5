"""Pareto frontier of two objectives with explicit directions (InferenceX's "optimal only" view).

The main chart maximises both throughput per GPU and interactivity; the E2E chart maximises throughput
per GPU while minimising latency. Directions are explicit arguments, never inferred from axis names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Direction = Literal["max", "min"]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def pareto_front(
    xs: Sequence[float | None],
    ys: Sequence[float | None],
    *,
    x_dir: Direction = "max",
    y_dir: Direction = "max",
) -> list[int]:
    """Indices of the non-dominated points, ordered by ascending x (the frontier's drawing order).

    A point is dominated when another point is at least as good on both objectives and strictly better
    on one. Exact duplicates collapse to their first occurrence (one frontier vertex, not two). Points
    with a missing or non-finite coordinate are ignored. O(n log n).
    """
    if len(xs) != len(ys):
        raise ValueError(f"pareto_front: {len(xs)} x values but {len(ys)} y values")
    if x_dir not in ("max", "min") or y_dir not in ("max", "min"):
        raise ValueError(f"pareto_front: directions must be 'max' or 'min', got {x_dir!r}, {y_dir!r}")
    sx = 1.0 if x_dir == "max" else -1.0
    sy = 1.0 if y_dir == "max" else -1.0
    # Work in "bigger is better" space. Sort best-x first, best-y first within an x tie, and the original
    # index last so the first of a set of duplicates wins; then keep each point whose y strictly beats
    # every point already seen (those all have x at least as good).
    candidates = [
        (-sx * float(x), -sy * float(y), i)  # type: ignore[arg-type]
        for i, (x, y) in enumerate(zip(xs, ys, strict=True))
        if _finite(x) and _finite(y)
    ]
    candidates.sort()
    front: list[int] = []
    best_y = -math.inf
    for _neg_x, neg_y, i in candidates:
        y = -neg_y
        if y > best_y:
            front.append(i)
            best_y = y
    front.sort(key=lambda i: (float(xs[i]), float(ys[i])))  # type: ignore[arg-type]
    return front


def dominated(
    a: tuple[float, float], b: tuple[float, float], *, x_dir: Direction = "max", y_dir: Direction = "max"
) -> bool:
    """True when point `a` is dominated by point `b` under the given directions."""
    sx = 1.0 if x_dir == "max" else -1.0
    sy = 1.0 if y_dir == "max" else -1.0
    ax, ay, bx, by = sx * a[0], sy * a[1], sx * b[0], sy * b[1]
    return bx >= ax and by >= ay and (bx > ax or by > ay)
