"""Multi-process mode: spread the streams over N worker processes and merge their timestamps.

Each worker owns a uvloop loop and a keep-alive pool and gets every N-th request and a 1/N share of C
(the shares sum to C, so in-flight never exceeds C). Workers warm up, report ready, and block on one
shared start event; each stamps its own start on release and the run starts at the earliest.
``time.perf_counter`` is CLOCK_MONOTONIC on Linux, one clock for every process on the host, so records
merge without conversion; the window's unix times are those of the earliest start and the latest end.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import time
from collections.abc import Sequence
from typing import Any

from infersweep.bench.config import BenchConfig
from infersweep.bench.dataset import RequestSpec
from infersweep.bench.health import HealthSample
from infersweep.bench.records import RequestRecord
from infersweep.bench.runner import RunOutput, run_shard

_READY_TIMEOUT_S = 600.0


def shares(conc: int, n: int) -> list[int]:
    """Split ``conc`` streams over ``n`` workers as evenly as possible (each ≥ 1)."""
    return [conc // n + (1 if w < conc % n else 0) for w in range(n)]


def _worker(
    w: int,
    cfg_dict: dict[str, Any],
    warm: list[RequestSpec],
    specs: list[RequestSpec],
    conc: int,
    arrivals: list[float] | None,
    ready_q: Any,
    start_evt: Any,
    out_q: Any,
) -> None:
    import asyncio

    import uvloop

    cfg = BenchConfig.model_validate(cfg_dict)

    async def gate() -> float:
        ready_q.put(w)
        await asyncio.get_running_loop().run_in_executor(None, start_evt.wait)
        # this worker's own start; the run starts at the earliest one (wake-up latency is not load time)
        return time.perf_counter()

    try:
        out = uvloop.run(run_shard(cfg, warm, specs, conc, arrivals, gate))
        out_q.put(
            (
                w,
                [r.to_tuple() for r in out.records],
                out.health[0].to_tuple(),
                out.t_end,
                out.t_start,
                out.warmup_failed,
                out.warmup_errors,
                None,
                out.t_start_unix,
                out.t_end_unix,
            )
        )
    except BaseException as exc:
        ready_q.put(w)  # never leave the parent waiting for a dead worker
        out_q.put((w, [], ([], 0.0, 0.0, 0), 0.0, 0.0, 0, [], f"{type(exc).__name__}: {exc}", 0.0, 0.0))


def run_multiprocess(
    cfg: BenchConfig,
    warm: Sequence[RequestSpec],
    specs: Sequence[RequestSpec],
    arrivals: Sequence[float] | None,
    workers: int,
) -> RunOutput:
    """Run one point over ``workers`` processes (spawned, so no state is inherited from the caller)."""
    ctx = mp.get_context("spawn")
    ready_q, out_q = ctx.Queue(), ctx.Queue()
    start_evt = ctx.Event()
    cfg_dict = cfg.model_dump()  # python mode: keeps request_rate=inf (JSON would turn it into null)
    procs = []
    for w, c in enumerate(shares(cfg.conc, workers)):
        p = ctx.Process(
            target=_worker,
            args=(
                w,
                cfg_dict,
                list(warm[w::workers]),
                list(specs[w::workers]),
                c,
                list(arrivals[w::workers]) if arrivals is not None else None,
                ready_q,
                start_evt,
                out_q,
            ),
            daemon=True,
        )
        p.start()
        procs.append(p)
    try:
        _collect(ready_q, procs, workers, _READY_TIMEOUT_S + cfg.request_timeout_s, "ready")
        start_evt.set()
        results = _collect(out_q, procs, workers, cfg.request_timeout_s * 2 + 600.0, "results")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
    errors = [r[7] for r in results if r[7]]
    if errors:
        raise RuntimeError(f"bench worker process failed: {errors[0]}")
    records: list[RequestRecord] = []
    health: list[HealthSample] = []
    for r in sorted(results, key=lambda x: x[0]):
        records.extend(RequestRecord.from_tuple(t) for t in r[1])
        health.append(HealthSample(*r[2]))
    records.sort(key=lambda r: r.index)
    first = min(results, key=lambda r: r[4])
    last = max(results, key=lambda r: r[3])
    return RunOutput(
        records=records,
        health=health,
        t_start=first[4],
        t_end=last[3],
        t_start_unix=first[8],
        t_end_unix=last[9],
        warmup_failed=sum(r[5] for r in results),
        warmup_errors=[e for r in results for e in r[6]][:5],
    )


def _collect(q: Any, procs: list[Any], n: int, timeout_s: float, what: str) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n:
        try:
            got.append(q.get(timeout=1.0))
            continue
        except queue.Empty:
            pass
        dead = [p for p in procs if p.exitcode not in (None, 0)]
        if dead:
            raise RuntimeError(f"bench worker exited with code {dead[0].exitcode} before sending {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench workers did not send {what} within {timeout_s:.0f} s")
    return got
