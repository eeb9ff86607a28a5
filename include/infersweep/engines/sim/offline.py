"""Drive the scheduler offline (no HTTP, no wall clock): closed-loop load points for tests and docs.

`closed_loop` keeps `concurrency` requests in flight, like `vllm bench serve --max-concurrency C
--request-rate inf`, and reports vLLM-style metrics in simulated time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from statistics import mean, median
from typing import Any

from infersweep.engines.sim.noise import NoiseModel
from infersweep.engines.sim.roofline import Roofline
from infersweep.engines.sim.scheduler import Scheduler, SchedulerConfig, SimRequest


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
    ttfts = [r.first_token_time - r.arrival for r in done if r.first_token_time is not None]
    tpots = [(r.finish_time - r.first_token_time) / (r.num_output - 1)
             for r in done if r.finish_time is not None and r.first_token_time is not None and r.num_output > 1]
    duration = sched.clock
    out_tokens = sum(r.num_output for r in done)
    in_tokens = sum(r.prompt_len for r in done)
    point = LoadPoint(
        concurrency=concurrency, mean_ttft_s=mean(ttfts), median_ttft_s=median(ttfts),
        mean_tpot_s=mean(tpots) if tpots else 0.0, output_throughput=out_tokens / duration,
        total_throughput=(out_tokens + in_tokens) / duration, duration_s=duration,
        num_preemptions=sched.num_preemptions, completed=len(done),
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
    if config.record_token_times:
        raw["itls"] = [[b - a for a, b in zip(r.token_times, r.token_times[1:], strict=False)] for r in reqs]
    return point, raw
