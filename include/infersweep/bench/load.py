"""Load generation: the closed loop (C lanes, like vLLM's --max-concurrency semaphore at rate=inf) and the
open-loop rate mode (gamma inter-arrivals, Poisson at burstiness 1, capped by C in-flight requests)."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Sequence

import aiohttp
import numpy as np

from infersweep.bench.config import BenchConfig
from infersweep.bench.dataset import RequestSpec
from infersweep.bench.records import RequestRecord
from infersweep.bench.transport import stream_request


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

    async def send(i: int) -> None:
        # x-request-id lets server logs (and the timing-truth mock) be joined with our records
        hdrs = {**headers, "X-Request-Id": f"infersweep-{specs[i].index}"}
        await stream_request(session, url, hdrs, specs[i], recs[i], chat=cfg.chat, save_text=cfg.save_texts)

    if arrivals is None:
        # Closed loop: every request is eligible at t_start (vLLM creates all tasks up front), and C lanes
        # pull the next one as soon as theirs finishes - the same schedule as a FIFO semaphore.
        pending = iter(range(len(specs)))

        async def lane() -> None:
            for i in pending:
                recs[i].t_sched = t_start
                await send(i)

        await asyncio.gather(*(lane() for _ in range(min(conc, len(specs)))))
        return recs

    sem = asyncio.Semaphore(conc)

    async def gated(i: int) -> None:
        async with sem:
            await send(i)

    tasks = []
    for i, off in enumerate(arrivals):
        delay = t_start + off - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        recs[i].t_sched = t_start + off
        tasks.append(asyncio.create_task(gated(i)))
    await asyncio.gather(*tasks)
    return recs
