"""One benchmark point in one process: warm-up, measured phase, health sampling."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from infersweep.bench.config import BenchConfig
from infersweep.bench.dataset import RequestSpec
from infersweep.bench.health import HealthMonitor, HealthSample
from infersweep.bench.load import drive
from infersweep.bench.records import RequestRecord
from infersweep.bench.transport import make_session


def unix_offset() -> float:
    """``time.time() − time.perf_counter()`` now: add it to a ``perf_counter`` stamp to get unix seconds.

    The client times everything with ``perf_counter`` (monotonic, high resolution); GPU telemetry is stamped
    with ``time.time()``. Both are system-wide clocks on Linux, so the offset read in any process of the host
    converts any other's stamps; it changes only when the wall clock is stepped, which is why the start and
    the end of the measured window each get their own reading (as InferenceX takes ``time.time()`` twice).
    """
    p0 = time.perf_counter()
    wall = time.time()
    p1 = time.perf_counter()
    return wall - (p0 + p1) / 2.0


@dataclass
class RunOutput:
    """Everything measured for one point, from one or several client processes.

    ``t_start``/``t_end`` are ``perf_counter`` seconds; ``t_start_unix``/``t_end_unix`` are the same two
    instants in unix wall-clock seconds, the clock of the GPU telemetry samples.
    """

    records: list[RequestRecord]
    health: list[HealthSample]
    t_start: float
    t_end: float
    t_start_unix: float
    t_end_unix: float
    warmup_failed: int = 0
    warmup_errors: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Whole-run duration: first dispatch to the last request's completion (as vLLM)."""
        return self.t_end - self.t_start


async def run_shard(
    cfg: BenchConfig,
    warm: Sequence[RequestSpec],
    specs: Sequence[RequestSpec],
    conc: int,
    arrivals: Sequence[float] | None,
    start_gate: Callable[[], Awaitable[float]] | None = None,
) -> RunOutput:
    """Warm up with ``warm`` (closed loop, untimed), wait for ``start_gate``, then run ``specs``."""
    session = make_session(
        conc,
        total_timeout_s=cfg.request_timeout_s,
        connect_timeout_s=cfg.connect_timeout_s,
    )
    async with session:
        warm_recs = await drive(session, cfg, warm, conc, time.perf_counter()) if warm else []
        t_start = await start_gate() if start_gate else time.perf_counter()
        t_start_unix = t_start + unix_offset()
        monitor = HealthMonitor()
        monitor.start()
        recs = await drive(session, cfg, specs, conc, t_start, arrivals)
        t_end = time.perf_counter()
        t_end_unix = t_end + unix_offset()
        health = await monitor.stop()
    health.events = sum(r.num_events for r in recs)
    failed_warm = [r for r in warm_recs if not r.success]
    return RunOutput(
        records=recs,
        health=[health],
        t_start=t_start,
        t_end=t_end,
        t_start_unix=t_start_unix,
        t_end_unix=t_end_unix,
        warmup_failed=len(failed_warm),
        warmup_errors=[r.error or "" for r in failed_warm[:5]],
    )
