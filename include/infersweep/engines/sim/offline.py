"""Drive the scheduler offline (no HTTP, no wall clock): closed-loop load points for tests and docs.

`closed_loop` keeps `concurrency` requests in flight, like `vllm bench serve --max-concurrency C
--request-rate inf`, and reports vLLM-style metrics in simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean, median

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
) -> LoadPoint:
    """Run `num_requests` requests of isl/osl tokens with `concurrency` in flight."""
    sched = Scheduler(config, roofline)
    done: list[SimRequest] = []
    issued = 0

    def issue() -> None:
        nonlocal issued
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
    return LoadPoint(
        concurrency=concurrency, mean_ttft_s=mean(ttfts), median_ttft_s=median(ttfts),
        mean_tpot_s=mean(tpots) if tpots else 0.0, output_throughput=out_tokens / duration,
        total_throughput=(out_tokens + isl * len(done)) / duration, duration_s=duration,
        num_preemptions=sched.num_preemptions, completed=len(done),
    )
