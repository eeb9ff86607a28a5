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


@dataclass
class RunOutput:
    """Everything measured for one point, from one or several client processes."""

    records: list[RequestRecord]
    health: list[HealthSample]
    t_start: float
    t_end: float
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
        monitor = HealthMonitor()
        monitor.start()
        recs = await drive(session, cfg, specs, conc, t_start, arrivals)
        t_end = time.perf_counter()
        health = await monitor.stop()
    health.events = sum(r.num_events for r in recs)
    failed_warm = [r for r in warm_recs if not r.success]
    return RunOutput(
        records=recs,
        health=[health],
        t_start=t_start,
        t_end=t_end,
        warmup_failed=len(failed_warm),
        warmup_errors=[r.error or "" for r in failed_warm[:5]],
    )
