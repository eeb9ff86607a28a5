"""Steady-state window and the 1-second timeline of achieved concurrency and token rate.

In-flight = requests between send and last token event. The steady-state window opens when in-flight first
reaches ``0.9·C`` and closes at the first drain: the first time in-flight falls below that level after the
last request was sent (strictly after) (before that, a dip is only the instant between one request ending and the next
starting). Requests are "in the window" when they were sent inside it; tokens are counted when their event
arrived inside it (a multi-token event's tokens are spread evenly over the request's events).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from infersweep.bench.metrics import request_tpot, stats_ms
from infersweep.bench.records import RequestRecord

STEADY_FRACTION = 0.9


def _edges(records: Sequence[RequestRecord]) -> list[tuple[float, int]]:
    ev = [(r.t_sent, 1) for r in records] + [(r.t_end, -1) for r in records]
    ev.sort(key=lambda e: (e[0], e[1]))  # ends before starts at equal times: no phantom peaks
    return ev


def peak_inflight(records: Sequence[RequestRecord]) -> int:
    """Most requests in flight at once (vLLM's ``max_concurrent_requests``, here exact, not per 1-s bucket)."""
    cur = peak = 0
    for _, d in _edges(records):
        cur += d
        peak = max(peak, cur)
    return peak


def steady_window(records: Sequence[RequestRecord], conc: int | None) -> tuple[float, float] | None:
    """(start, end) absolute times of the steady-state window, or None when the level is never reached."""
    if not records:
        return None
    edges = _edges(records)
    level = STEADY_FRACTION * (conc if conc else peak_inflight(records))
    last_send = max(r.t_sent for r in records)
    start: float | None = None
    inflight = 0
    for t, d in edges:
        inflight += d
        if start is None and inflight >= level:
            start = t
        elif start is not None and t > last_send and inflight < level:
            return (start, t) if t > start else None
    return None


def _token_times(records: Sequence[RequestRecord]) -> tuple[np.ndarray, np.ndarray]:
    times: list[float] = []
    weights: list[float] = []
    for r in records:
        if not r.success:
            continue
        per_event = r.output_tokens / max(r.num_events, 1)
        times.extend(r.read_times)
        weights.extend(n * per_event for n in r.read_events)
    return np.asarray(times, dtype=float), np.asarray(weights, dtype=float)


def steady_state(records: Sequence[RequestRecord], conc: int | None) -> dict[str, object]:
    """Window metrics: duration, throughputs and TTFT/TPOT/E2EL stats of requests sent inside it."""
    win = steady_window(records, conc)
    if win is None:
        return {"available": False, "reason": f"in-flight never reached {STEADY_FRACTION}·C"}
    t0, t1 = win
    dur = t1 - t0
    times, weights = _token_times(records)
    mask = (times >= t0) & (times <= t1)
    inside = [r for r in records if t0 <= r.t_sent <= t1 and r.success]
    finished = [r for r in records if r.success and t0 <= r.t_end <= t1]
    out: dict[str, object] = {
        "available": True,
        "start_offset_s": t0,
        "end_offset_s": t1,
        "duration": dur,
        "requests_sent": len(inside),
        "request_throughput": len(finished) / dur,
        "output_throughput": float(weights[mask].sum()) / dur,
        "mean_inflight": _mean_inflight(records, t0, t1),
    }
    out.update(stats_ms([r.ttft for r in inside], "ttft"))
    out.update(stats_ms([t for t in (request_tpot(r) for r in inside) if t is not None], "tpot"))
    out.update(stats_ms([r.latency for r in inside], "e2el"))
    return out


def _mean_inflight(records: Sequence[RequestRecord], t0: float, t1: float) -> float:
    total = sum(max(0.0, min(r.t_end, t1) - max(r.t_sent, t0)) for r in records)
    return total / (t1 - t0) if t1 > t0 else 0.0


def timeline(records: Sequence[RequestRecord], start: float, end: float) -> list[dict[str, float]]:
    """Per second from ``start``: mean in-flight requests (time-weighted), output tokens/s, completions."""
    if end <= start:
        return []
    n = max(1, math.ceil(end - start))
    inflight = np.zeros(n)
    for r in records:
        a, b = max(r.t_sent, start) - start, min(r.t_end, end) - start
        if b <= a:
            continue
        i0, i1 = int(a), min(int(b), n - 1)
        if i0 == i1:
            inflight[i0] += b - a
            continue
        inflight[i0] += (i0 + 1) - a
        inflight[i0 + 1 : i1] += 1.0
        inflight[i1] += b - i1
    times, weights = _token_times(records)
    idx = np.clip((times - start).astype(int), 0, n - 1) if times.size else np.zeros(0, dtype=int)
    toks = np.bincount(idx, weights=weights, minlength=n) if times.size else np.zeros(n)
    ends = np.bincount(
        np.clip(np.asarray([int(r.t_end - start) for r in records if r.success], dtype=int), 0, n - 1),
        minlength=n,
    )
    out = []
    for i in range(n):
        width = min(1.0, (end - start) - i)
        out.append(
            {
                "t": float(i),
                "width_s": width,
                "concurrency": float(inflight[i] / width),
                "output_tokens_per_s": float(toks[i] / width),
                "completed": int(ends[i]),
            }
        )
    return out
