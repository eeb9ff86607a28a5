"""Simulated time: turn a result measured against a time-scaled simulator back into simulated seconds.

The simulator runs X times faster than the wall clock (`--time-scale X`), so the client measures
durations X times too short and throughputs X times too high. Reports must show the simulated engine's
own numbers, so every duration is multiplied and every rate divided by X. Client-side jitter is scaled
up with them; that is the price of a fast demo, and the result says so (`infersweep.time_scale`).
`benchmark_start_time_unix` / `benchmark_end_time_unix` stay wall-clock instants: they locate the window
on the GPU telemetry's clock, so in a converted result `duration` no longer equals their difference.
"""

from __future__ import annotations

import copy
from typing import Any

#: Top-level per-request lists of durations (seconds).
_DURATION_LISTS = ("ttfts", "latencies", "start_times", "tpots")


def _is_duration_key(key: str) -> bool:
    return key.endswith("_ms") or key in ("duration",)


def _is_rate_key(key: str) -> bool:
    return key.endswith(("_throughput", "_goodput", "_per_s")) or key in ("request_goodput", "request_goodput:")


def to_simulated_time(result: dict[str, Any], time_scale: float) -> dict[str, Any]:
    """A copy of a bench result with durations ×scale and rates ÷scale (interactivity, being 1/TPOT, ÷scale).

    The wall-clock originals of the headline figures are kept under `infersweep.wall_clock`.
    """
    if time_scale <= 0:
        raise ValueError(f"time_scale must be > 0, got {time_scale}")
    out = copy.deepcopy(result)
    if time_scale == 1.0:
        out.setdefault("infersweep", {})["time_scale"] = 1.0
        return out
    wall: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if _is_duration_key(key):
            out[key] = value * time_scale
            wall[key] = value
        elif _is_rate_key(key) or "intvty" in key or "interactivity" in key:
            out[key] = value / time_scale
            wall[key] = value
    for key in _DURATION_LISTS:
        if isinstance(result.get(key), list):
            out[key] = [v * time_scale if isinstance(v, int | float) else v for v in result[key]]
    if isinstance(result.get("itls"), list):
        out["itls"] = [
            [g * time_scale for g in gaps] if isinstance(gaps, list) else gaps for gaps in result["itls"]
        ]
    meta = out.setdefault("infersweep", {})
    meta["time_scale"] = time_scale
    meta["wall_clock"] = wall
    meta["time_scale_note"] = (
        "durations multiplied and rates divided by time_scale (simulated time); nested client-health and "
        "timeline figures stay in wall-clock time"
    )
    return out
