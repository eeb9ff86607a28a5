"""Load generation: the closed loop (C lanes, like vLLM's --max-concurrency semaphore at rate=inf) and the
open-loop rate mode (gamma inter-arrivals, Poisson at burstiness 1, capped by C in-flight requests)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import aiohttp
import numpy as np

from infersweep.bench.config import BenchConfig
from infersweep.bench.dataset import RequestSpec
from infersweep.bench.records import RequestRecord
from infersweep.bench.transport import IssueGate, stream_request


def arrival_offsets(n: int, rate: float, burstiness: float, seed: int) -> list[float] | None:
    """Send offsets (s from the start) for rate mode, or None for the closed loop (rate = inf).

    As vLLM: gamma(shape=k, scale=1/(rate·k)) gaps, cumulated, then rescaled so the last offset is
    exactly n/rate (stabilises throughput across seeds)."""
    if math.isinf(rate):
        return None
    rng = np.random.default_rng([seed, 7919])
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n)
    cum = np.cumsum(gaps)
    if cum[-1] > 0:
        cum *= (n / rate) / cum[-1]
    return [float(x) for x in cum]


def request_headers(cfg: BenchConfig) -> dict[str, str]:
    """Headers of every request; the bearer token comes from the environment and is never logged."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    key = os.environ.get(cfg.api_key_env)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


class StallWatchdog:
    """Cancels requests whose stream has been silent (no token event) for ``stall_s``.

    One periodic scan over the in-flight requests instead of aiohttp's ``sock_read`` timeout, which
    re-arms a loop timer on every socket read and cost ~2 µs per event in perf/client_capacity.py."""

    def __init__(self, recs: Sequence[RequestRecord], stall_s: float) -> None:
        self.recs = recs
        self.stall_s = stall_s
        self.inflight: dict[int, asyncio.Future[None]] = {}
        self.stalled: set[int] = set()

    async def run(self) -> None:
        """Scan every quarter of the stall time (at most every 5 s) until cancelled."""
        period = min(5.0, self.stall_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.perf_counter()
            for i, fut in list(self.inflight.items()):
                r = self.recs[i]
                last = r.read_times[-1] if r.read_times else r.t_sent
                if r.t_sent and now - last > self.stall_s:
                    self.stalled.add(i)
                    fut.cancel()

    async def guard(self, i: int, coro: Coroutine[Any, Any, None]) -> None:
        """Run one request under the watchdog; a stall fails that request only."""
        fut = asyncio.ensure_future(coro)
        self.inflight[i] = fut
        try:
            await fut
        except asyncio.CancelledError:
            if i not in self.stalled or not fut.cancelled():
                raise  # the run itself is being cancelled
            self.recs[i].error = f"stalled: no token event for {self.stall_s:g} s (--stall-timeout-s)"
        finally:
            self.inflight.pop(i, None)


async def drive(
    session: aiohttp.ClientSession,
    cfg: BenchConfig,
    specs: Sequence[RequestSpec],
    conc: int,
    t_start: float,
    arrivals: Sequence[float] | None = None,
) -> list[RequestRecord]:
    """Run ``specs`` with at most ``conc`` in flight; returns one record per spec, in spec order."""
    url = cfg.base_url + cfg.endpoint
    headers = request_headers(cfg)
    recs = [RequestRecord(s.index, s.prompt_len, s.output_len) for s in specs]

    dog = StallWatchdog(recs, cfg.stall_timeout_s) if cfg.stall_timeout_s else None
    dog_task = asyncio.create_task(dog.run()) if dog else None
    gate = IssueGate()

    async def send(i: int) -> None:
        # x-request-id lets server logs (and the timing-truth mock) be joined with our records
        hdrs = {**headers, "X-Request-Id": f"infersweep-{specs[i].index}"}
        req = stream_request(session, url, hdrs, specs[i], recs[i], chat=cfg.chat, save_text=cfg.save_texts,
                             gate=gate)  # fmt: skip
        await (dog.guard(i, req) if dog else req)

    try:
        await _dispatch(send, recs, conc, t_start, arrivals)
    finally:
        if dog_task is not None:
            dog_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dog_task
    return recs


async def _dispatch(
    send: Callable[[int], Awaitable[None]],
    recs: list[RequestRecord],
    conc: int,
    t_start: float,
    arrivals: Sequence[float] | None,
) -> None:
    """Call ``send(i)`` for every record: closed loop (C lanes) or at the precomputed arrival offsets."""
    if arrivals is None:
        # Closed loop: every request is eligible at t_start (vLLM creates all tasks up front), and C lanes
        # pull the next one as soon as theirs finishes - the same schedule as a FIFO semaphore.
        pending = iter(range(len(recs)))

        async def lane() -> None:
            for i in pending:
                recs[i].t_sched = t_start
                await send(i)

        await asyncio.gather(*(lane() for _ in range(min(conc, len(recs)))))
        return

    sem = asyncio.Semaphore(conc)

    async def gated(i: int) -> None:
        async with sem:
            await send(i)

    tasks = []
    for i, off in enumerate(arrivals):
        target = t_start + off
        # uvloop's timers truncate to whole milliseconds, so one sleep can end up to 1 ms early: sleep again
        # until the arrival time has really come (a request is never sent before its scheduled time).
        while (delay := target - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        recs[i].t_sched = target
        tasks.append(asyncio.create_task(gated(i)))
    await asyncio.gather(*tasks)
