"""Drive the scheduler offline (no HTTP, no wall clock): closed-loop load points for tests and docs.

`closed_loop` keeps `concurrency` requests in flight, like `vllm bench serve --max-concurrency C
--request-rate inf`, and reports vLLM-style metrics in simulated time.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean, median
from typing import Any

from infersweep.engines.sim.kv_transfer import KvLink, KvTransferModel
from infersweep.engines.sim.noise import NoiseModel
from infersweep.engines.sim.profiles import ModelProfile
from infersweep.engines.sim.roofline import Roofline, Topology
from infersweep.engines.sim.scheduler import Scheduler, SchedulerConfig, SimRequest, kv_received
from infersweep.recipes.hardware import GpuSpec


@dataclass(frozen=True)
class LoadPoint:
    """One concurrency point: the vLLM benchmark's headline numbers (seconds, tokens/s)."""

    concurrency: int
    mean_ttft_s: float
    median_ttft_s: float
    mean_tpot_s: float
    output_throughput: float
    total_throughput: float
    duration_s: float
    num_preemptions: int
    completed: int
    median_tpot_s: float = 0.0

    @property
    def interactivity(self) -> float:
        """Tokens/s/user as InferenceX reports it: 1 / TPOT."""
        return 1.0 / self.mean_tpot_s if self.mean_tpot_s > 0 else float("inf")


def closed_loop(
    roofline: Roofline,
    config: SchedulerConfig,
    *,
    concurrency: int,
    isl: int,
    osl: int,
    num_requests: int,
    max_steps: int = 10_000_000,
    noise: NoiseModel | None = None,
) -> LoadPoint:
    """Run `num_requests` requests of isl/osl tokens with `concurrency` in flight.

    `noise` (off by default) multiplies every step's time (see `engines.sim.noise`); each call starts the
    model's noise path afresh from its seed, so a different seed is a different benchmark run.
    """
    point, _ = closed_loop_run(roofline, config, concurrency=concurrency, lengths=[(isl, osl)] * num_requests,
                               max_steps=max_steps, noise=noise)
    return point


def closed_loop_run(
    roofline: Roofline,
    config: SchedulerConfig,
    *,
    concurrency: int,
    lengths: Sequence[tuple[int, int]],
    max_steps: int = 10_000_000,
    noise: NoiseModel | None = None,
) -> tuple[LoadPoint, dict[str, Any]]:
    """`closed_loop` with per-request (input, output) lengths, also returning the run as the benchmark
    client's raw JSON (vLLM `--save-result` keys: per-request `input_lens`, `output_lens`, `ttfts`,
    `latencies`, `start_times`, `errors`, plus `itls` when `config.record_token_times`), in simulated
    seconds and in issue order, so offline runs can feed the same analysis as measured ones."""
    sched = Scheduler(config, roofline, noise=noise)
    done: list[SimRequest] = []
    issued = 0
    num_requests = len(lengths)

    def issue() -> None:
        nonlocal issued
        isl, osl = lengths[issued]
        sched.add(SimRequest(rid=issued, prompt_len=isl, max_tokens=osl, arrival=sched.clock))
        issued += 1

    for _ in range(min(concurrency, num_requests)):
        issue()
    steps = 0
    while sched.has_work:
        out = sched.step()
        steps += 1
        if out is None or steps > max_steps:
            raise RuntimeError("the scheduler stopped making progress")
        for req in out.finished:
            done.append(req)
            if issued < num_requests:
                issue()
    return _summary(done, duration=sched.clock, concurrency=concurrency, num_preemptions=sched.num_preemptions,
                    record_token_times=config.record_token_times)


def _summary(done: list[SimRequest], *, duration: float, concurrency: int, num_preemptions: int,
             record_token_times: bool) -> tuple[LoadPoint, dict[str, Any]]:
    """The load point and the client's raw JSON of finished requests (arrival = when the client sent it)."""
    ttfts = [r.first_token_time - r.arrival for r in done if r.first_token_time is not None]
    tpots = [(r.finish_time - r.first_token_time) / (r.num_output - 1)
             for r in done if r.finish_time is not None and r.first_token_time is not None and r.num_output > 1]
    out_tokens = sum(r.num_output for r in done)
    in_tokens = sum(r.prompt_len for r in done)
    point = LoadPoint(
        concurrency=concurrency, mean_ttft_s=mean(ttfts), median_ttft_s=median(ttfts),
        mean_tpot_s=mean(tpots) if tpots else 0.0, output_throughput=out_tokens / duration,
        total_throughput=(out_tokens + in_tokens) / duration, duration_s=duration,
        num_preemptions=num_preemptions, completed=len(done), median_tpot_s=median(tpots) if tpots else 0.0,
    )
    reqs = sorted(done, key=lambda r: r.rid)
    raw: dict[str, Any] = {
        "duration": duration, "completed": len(done), "failed": 0, "max_concurrency": concurrency,
        "total_input_tokens": in_tokens, "total_output_tokens": out_tokens,
        "output_throughput": point.output_throughput, "total_token_throughput": point.total_throughput,
        "input_lens": [r.prompt_len for r in reqs],
        "output_lens": [r.num_output for r in reqs],
        "ttfts": [(r.first_token_time or r.arrival) - r.arrival for r in reqs],
        "latencies": [(r.finish_time or r.arrival) - r.arrival for r in reqs],
        "start_times": [r.arrival for r in reqs],
        "errors": ["" for _ in reqs],
    }
    if record_token_times:
        raw["itls"] = [[b - a for a, b in zip(r.token_times, r.token_times[1:], strict=False)] for r in reqs]
    return point, raw


# --- disaggregated serving -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerModel:
    """One worker's step-time model and scheduler limits (every worker of a pool has the same)."""

    roofline: Roofline
    config: SchedulerConfig

    @property
    def gpus(self) -> int:
        return self.roofline.topo.gpus


def worker_model(model: ModelProfile, gpu: GpuSpec, topology: Topology, *, max_num_seqs: int = 256,
                 max_num_batched_tokens: int = 8192, gpu_memory_utilization: float = 0.9, block_size: int = 16,
                 kv_dtype_bytes: float = 2.0, record_token_times: bool = False) -> WorkerModel:
    """A worker as `sim serve` builds it (limits per DP rank, summed over ranks). Raises ValueError when the
    weights leave no KV cache."""
    rf = Roofline(model, gpu, topology, kv_dtype_bytes=kv_dtype_bytes)
    blocks = rf.num_kv_blocks(gpu_memory_utilization, block_size)
    if blocks <= 0:
        raise ValueError(f"{model.name} does not fit on {topology.gpus} {gpu.name} GPU(s): no KV cache left")
    dp = topology.dp
    return WorkerModel(rf, SchedulerConfig(max_num_seqs=max_num_seqs * dp,
                                           max_num_batched_tokens=max_num_batched_tokens * dp,
                                           num_blocks=blocks * dp, block_size=block_size,
                                           record_token_times=record_token_times))


def disagg_closed_loop_run(
    prefill: WorkerModel,
    decode: WorkerModel,
    kv: KvTransferModel,
    *,
    num_prefill: int = 1,
    num_decode: int = 1,
    concurrency: int,
    lengths: Sequence[tuple[int, int]],
    policy: str = "round_robin",
    max_events: int = 50_000_000,
) -> tuple[LoadPoint, dict[str, Any]]:
    """`closed_loop_run` on a disaggregated topology: `num_prefill` prefill and `num_decode` decode workers.

    The same protocol as `sim router` + `sim serve --role …`, in simulated time: the router picks a prefill
    and a decode worker when the request arrives (round_robin, or least_loaded: fewest requests in flight);
    the prefill worker batches prompts only (each request there ends with its first token); its KV then
    crosses that worker's link (`KvLink`: queueing, wire time, latency); the decode worker admits the
    request once the KV has arrived and its cache has room, emits the first token from that step
    (`kv_received`) and batches decodes only. Every worker steps on its own clock; events are processed in
    time order, so no worker sees a request before it exists. TTFT therefore covers prefill queueing and
    compute, the transfer and the decode admission; noise is not modelled.
    """
    if num_prefill < 1 or num_decode < 1:
        raise ValueError("a disaggregated topology needs at least one prefill and one decode worker")
    if policy not in ("round_robin", "least_loaded"):
        raise ValueError(f"unknown policy {policy!r} (round_robin, least_loaded)")
    prefills = [Scheduler(prefill.config, prefill.roofline) for _ in range(num_prefill)]
    decodes = [Scheduler(decode.config, decode.roofline) for _ in range(num_decode)]
    links = [KvLink(kv) for _ in prefills]
    workers = prefills + decodes
    in_flight = [0] * (num_prefill + num_decode)
    record = decode.config.record_token_times
    # Event: (time, sequence, worker index, request); a worker index < num_prefill is a prefill worker.
    events: list[tuple[float, int, int, SimRequest]] = []
    seq = itertools.count()
    started: dict[int, float] = {}
    decode_of: dict[int, int] = {}
    done: list[SimRequest] = []
    issued = 0
    rr = [0, 0]

    def pick(base: int, n: int, which: int) -> int:
        if policy == "least_loaded":
            return min(range(base, base + n), key=lambda i: in_flight[i])
        i = base + rr[which] % n
        rr[which] += 1
        return i

    def issue(t: float) -> None:
        nonlocal issued
        isl, _ = lengths[issued]
        p, d = pick(0, num_prefill, 0), pick(num_prefill, num_decode, 1)
        in_flight[p] += 1
        in_flight[d] += 1
        started[issued] = t
        decode_of[issued] = d
        heapq.heappush(events, (t, next(seq), p, SimRequest(rid=issued, prompt_len=isl, max_tokens=1, arrival=t)))
        issued += 1

    def finish(req: SimRequest) -> None:
        in_flight[decode_of[req.rid]] -= 1
        req.arrival = started[req.rid]  # the client's start, for TTFT and latency
        done.append(req)
        if issued < len(lengths):
            issue(req.finish_time or req.arrival)

    for _ in range(min(concurrency, len(lengths))):
        issue(0.0)
    clock = 0.0
    for _ in range(max_events):
        busy = [(w.clock, i) for i, w in enumerate(workers) if w.has_work]
        if events and (not busy or events[0][0] <= min(busy)[0]):
            t, _, i, req = heapq.heappop(events)
            sched = workers[i]
            if not sched.has_work:
                sched.advance_to(t)
            sched.add(req)
            continue
        if not busy:
            break
        i = min(busy)[1]
        out = workers[i].step()
        if out is None:
            raise RuntimeError("a worker stopped making progress")
        clock = max(clock, out.end)
        for req in out.finished:
            if i < num_prefill:
                in_flight[i] -= 1
                arrival = links[i].send(out.end, req.prompt_len)
                _, osl = lengths[req.rid]
                heapq.heappush(events, (arrival, next(seq), decode_of[req.rid],
                                        kv_received(req.rid, req.prompt_len, osl, arrival)))
            else:
                finish(req)
    else:
        raise RuntimeError("the disaggregated simulation did not finish (max_events)")
    if len(done) != len(lengths):
        raise RuntimeError(f"only {len(done)} of {len(lengths)} requests finished")
    return _summary(done, duration=clock, concurrency=concurrency,
                    num_preemptions=sum(w.num_preemptions for w in workers), record_token_times=record)
