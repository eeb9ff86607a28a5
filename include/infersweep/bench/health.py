"""Client health: event-loop lag and client CPU, so a result can say whether the client was the limit.

Lag is measured as the delay between ``loop.call_soon`` and the callback running: how long a freshly ready
event waits behind the loop's other work. (A timer-overshoot probe would be quantised to 1 ms by libuv's
millisecond timers under uvloop.) CPU is this process's user+system time over wall time: 100 % = one core.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

#: Thresholds from the issue: lag p99 above ~1 ms or CPU above ~70 % of a core marks the client as the limit.
LAG_P99_LIMIT_MS = 1.0
CPU_LIMIT_PCT = 70.0
_PROBE_INTERVAL_S = 0.01


@dataclass
class HealthSample:
    """Raw health data of one client process over the measured phase."""

    lags_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0
    events: int = 0

    def to_tuple(self) -> tuple[list[float], float, float, int]:
        """Picklable form for the multi-process mode."""
        return (self.lags_s, self.cpu_s, self.wall_s, self.events)


class HealthMonitor:
    """Samples loop lag every 10 ms and the process CPU time between :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.sample = HealthSample()
        self._task: asyncio.Task[None] | None = None
        self._cpu0 = 0.0
        self._wall0 = 0.0

    def start(self) -> None:
        """Begin sampling (call inside the running loop, right when the measured phase starts)."""
        self._cpu0 = time.process_time()
        self._wall0 = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        lags = self.sample.lags_s
        perf = time.perf_counter

        def _landed(t0: float) -> None:
            lags.append(perf() - t0)

        while True:
            loop.call_soon(_landed, perf())
            await asyncio.sleep(_PROBE_INTERVAL_S)

    async def stop(self) -> HealthSample:
        """Stop sampling and return the sample (CPU and wall over the measured phase)."""
        self.sample.cpu_s = time.process_time() - self._cpu0
        self.sample.wall_s = time.perf_counter() - self._wall0
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return self.sample


def summarize_health(samples: list[HealthSample]) -> dict[str, object]:
    """Merge per-process samples into the result's ``client_health`` block with the ``client_bound`` flag."""
    lags = np.asarray([x for s in samples for x in s.lags_s], dtype=float) * 1000.0
    events = sum(s.events for s in samples)
    cpu_s = sum(s.cpu_s for s in samples)
    per_proc_cpu = [100.0 * s.cpu_s / s.wall_s if s.wall_s > 0 else 0.0 for s in samples]
    lag_p99 = float(np.percentile(lags, 99)) if lags.size else 0.0
    max_cpu = max(per_proc_cpu, default=0.0)
    reasons = []
    if lag_p99 > LAG_P99_LIMIT_MS:
        reasons.append(f"event-loop lag p99 {lag_p99:.2f} ms > {LAG_P99_LIMIT_MS} ms")
    if max_cpu > CPU_LIMIT_PCT:
        reasons.append(f"client CPU {max_cpu:.0f} % of a core > {CPU_LIMIT_PCT:.0f} %")
    return {
        "client_bound": bool(reasons),
        "client_bound_reasons": reasons,
        "processes": len(samples),
        "loop_lag_ms": {
            "samples": int(lags.size),
            "mean": float(lags.mean()) if lags.size else 0.0,
            "p50": float(np.percentile(lags, 50)) if lags.size else 0.0,
            "p99": lag_p99,
            "max": float(lags.max()) if lags.size else 0.0,
        },
        "cpu_pct_per_process": per_proc_cpu,
        "cpu_pct_max": max_cpu,
        "cpu_seconds": cpu_s,
        "stream_events": events,
        "cpu_us_per_event": (1e6 * cpu_s / events) if events else None,
        "events_per_s": (events / max(s.wall_s for s in samples)) if events and samples else None,
        "thresholds": {"loop_lag_p99_ms": LAG_P99_LIMIT_MS, "cpu_pct": CPU_LIMIT_PCT},
    }
