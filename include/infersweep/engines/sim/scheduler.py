"""A discrete-step continuous-batching scheduler in the style of vLLM V1.

Pure and deterministic: it owns a simulated clock that only advances by modelled step times, so tests
can drive it without wall time. Each `step()`:

1. schedules the running sequences first (decode, or the next chunk of a partial prefill), allocating
   KV blocks; when the cache is full it preempts from the tail of the running list, freeing the victim's
   blocks and sending it back to the front of the waiting queue to be recomputed (vLLM V1's policy);
2. if nothing was preempted, admits waiting sequences while the token budget
   (`max_num_batched_tokens`), `max_num_seqs` and free KV blocks allow, chunking long prefills;
3. prices the batch with the roofline model (times the noise multiplier when a `NoiseModel` is given:
   see `noise.py`), advances the clock, and samples one token for every sequence whose scheduled tokens
   reached its end.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from infersweep.engines.sim.noise import NoiseModel, NoiseSampler
from infersweep.engines.sim.roofline import StepCost


class Status(Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class StepPricer(Protocol):
    """What the scheduler needs from the roofline model."""

    def step_cost(self, num_tokens: int, context_tokens: int, attn_pairs: float) -> StepCost: ...


@dataclass(eq=False, slots=True)
class SimRequest:
    """One sequence. `stop_after` makes the model emit EOS after that many output tokens (None: never)."""

    rid: int
    prompt_len: int
    max_tokens: int
    arrival: float
    stop_after: int | None = None
    payload: Any = None  # the server's per-request state (stream writer etc.)
    num_computed: int = 0
    num_output: int = 0
    num_tokens: int = 0  # prompt plus generated; a plain attribute because the step loop reads it per token
    blocks: int = 0
    status: Status = Status.WAITING
    finish_reason: str | None = None
    first_token_time: float | None = None
    finish_time: float | None = None
    num_preemptions: int = 0
    token_times: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.num_tokens = self.prompt_len + self.num_output


def kv_received(rid: int, prompt_len: int, max_tokens: int, arrival: float, *, stop_after: int | None = None,
                payload: Any = None) -> SimRequest:
    """The decode side of a disaggregated request whose prompt KV a prefill worker sent (arrived at `arrival`).

    As vLLM's NixlConnector does, the decode worker holds the KV of all prompt tokens but the last and
    computes that one itself: admission allocates the prompt's blocks (the request waits while the cache is
    full) and the step that admits it emits the first token (output index 0) from one token of compute. So
    a decode worker's steps hold no prefill work (unless a sequence is preempted: it is then recomputed
    locally, as a decode worker without the prefill's KV must)."""
    return SimRequest(rid=rid, prompt_len=prompt_len, max_tokens=max_tokens, arrival=arrival, stop_after=stop_after,
                      payload=payload, num_computed=prompt_len - 1)


@dataclass(frozen=True)
class SchedulerConfig:
    """Limits of one engine (summed over DP ranks)."""

    max_num_seqs: int
    max_num_batched_tokens: int
    num_blocks: int
    block_size: int = 16
    enable_chunked_prefill: bool = True
    record_token_times: bool = False  # tests and offline sweeps; the server keeps its own timestamps

    def __post_init__(self) -> None:
        if min(self.max_num_seqs, self.max_num_batched_tokens, self.num_blocks, self.block_size) < 1:
            raise ValueError("scheduler limits must all be >= 1")


@dataclass
class StepOutput:
    """What one step did. Times are simulated seconds."""

    start: float
    end: float
    cost: StepCost
    num_scheduled_tokens: int
    num_running: int
    emitted: list[SimRequest]
    emitted_index: list[int]  # output index of each emitted token (the request may have moved on since)
    finished: list[SimRequest]
    preempted: list[SimRequest]


class Scheduler:
    """Continuous batching over a paged KV cache; see the module docstring for the policy."""

    def __init__(self, config: SchedulerConfig, pricer: StepPricer, *, noise: NoiseModel | None = None) -> None:
        self.config = config
        self.pricer = pricer
        # Disabled noise is dropped here so the noiseless step path stays exactly as it was (bit-identical).
        self.noise: NoiseSampler | None = noise.sampler() if noise is not None and noise.enabled else None
        self.clock = 0.0
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        self.free_blocks = config.num_blocks
        self.num_preemptions = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.steps_total = 0

    # --- queue management --------------------------------------------------------------------------
    def add(self, req: SimRequest) -> None:
        """Queue a request; its `arrival` must not be in the scheduler's past (clamped if it is)."""
        if req.prompt_len < 1 or req.max_tokens < 1:
            raise ValueError("prompt_len and max_tokens must be >= 1")
        if self._blocks_for(req.prompt_len + req.max_tokens) > self.config.num_blocks:
            raise ValueError(
                f"request needs {req.prompt_len + req.max_tokens} tokens of KV cache but the cache holds "
                f"{self.config.num_blocks * self.config.block_size}"
            )
        self.waiting.append(req)

    def abort(self, req: SimRequest) -> None:
        """Drop a request (client went away), freeing its blocks. No-op when already finished."""
        if req.status is Status.FINISHED:
            return
        if req.status is Status.RUNNING:
            self.running.remove(req)
        else:
            self.waiting.remove(req)
        self._free(req)
        req.status = Status.FINISHED
        req.finish_reason = "abort"
        req.finish_time = self.clock

    def advance_to(self, t: float) -> None:
        """Move the idle clock forward (arrivals while the engine sleeps)."""
        if t > self.clock:
            self.clock = t

    @property
    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def kv_usage(self) -> float:
        """Fraction of KV blocks in use (vLLM's kv_cache_usage_perc, 0..1)."""
        return 1.0 - self.free_blocks / self.config.num_blocks

    # --- the step ----------------------------------------------------------------------------------
    def step(self) -> StepOutput | None:
        """Run one engine step; None when there is nothing to do."""
        if not self.has_work:
            return None
        cfg = self.config
        bs = cfg.block_size
        budget = cfg.max_num_batched_tokens
        # The loops below run once per sequence per step (1,000+ sequences at high concurrency), so they
        # are written flat: locals, no helper calls on the common decode path.
        sched: list[SimRequest] = []
        counts: list[int] = []
        preempted: list[SimRequest] = []
        num_tokens = 0
        context = 0
        pairs = 0.0
        running = self.running
        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            comp = req.num_computed
            n = req.num_tokens - comp
            if n > budget:
                n = budget
            total = comp + n
            need = (total + bs - 1) // bs - req.blocks
            if need > 0:
                while need > self.free_blocks:
                    victim = running.pop()
                    self._preempt(victim)
                    preempted.append(victim)
                    if victim is req:
                        break
                if req.status is not Status.RUNNING:
                    break
                req.blocks += need
                self.free_blocks -= need
            sched.append(req)
            counts.append(n)
            budget -= n
            num_tokens += n
            context += total
            pairs += n * (comp + n / 2)
            i += 1
        if not preempted:
            waiting = self.waiting
            while waiting and budget > 0 and len(running) < cfg.max_num_seqs:
                req = waiting[0]
                comp = req.num_computed
                remaining = req.num_tokens - comp
                if remaining > budget and not cfg.enable_chunked_prefill:
                    break
                n = min(remaining, budget)
                need = (comp + n + bs - 1) // bs - req.blocks
                if need > self.free_blocks:
                    break
                waiting.popleft()
                req.status = Status.RUNNING
                req.blocks += need
                self.free_blocks -= need
                running.append(req)
                sched.append(req)
                counts.append(n)
                budget -= n
                num_tokens += n
                context += comp + n
                pairs += n * (comp + n / 2)

        start = self.clock
        cost = self.pricer.step_cost(num_tokens, context, pairs) if num_tokens else _IDLE
        if self.noise is not None and num_tokens:
            # Every part scales alike: the step is as memory- or compute-bound as modelled, only slower or
            # faster (clock, thermals), so power and busy-time accounting stay consistent.
            f = self.noise.multiplier(start)
            cost = StepCost(total_s=cost.total_s * f, memory_s=cost.memory_s * f, compute_s=cost.compute_s * f,
                            overhead_s=cost.overhead_s * f)
        self.clock = end = start + cost.total_s
        self.steps_total += 1

        emitted: list[SimRequest] = []
        emitted_index: list[int] = []
        finished: list[SimRequest] = []
        record = cfg.record_token_times
        for req, n in zip(sched, counts, strict=True):
            comp = req.num_computed + n
            req.num_computed = comp
            if comp < req.num_tokens:
                continue  # partial prefill: no token yet
            out_n = req.num_output + 1
            req.num_output = out_n
            req.num_tokens += 1
            if req.first_token_time is None:
                # Prompt tokens count once per request, as vLLM's prompt_tokens_total (recompute excluded).
                self.prompt_tokens_total += req.prompt_len
                req.first_token_time = end
            if record:
                req.token_times.append(end)
            emitted.append(req)
            emitted_index.append(out_n - 1)
            if out_n >= req.max_tokens:
                req.finish_reason = "length"
            elif req.stop_after is not None and out_n >= req.stop_after:
                req.finish_reason = "stop"
            else:
                continue
            req.status = Status.FINISHED
            req.finish_time = end
            self.free_blocks += req.blocks
            req.blocks = 0
            finished.append(req)
        self.generation_tokens_total += len(emitted)
        if finished:
            self.running = [r for r in self.running if r.status is Status.RUNNING]
        return StepOutput(
            start=start, end=end, cost=cost, num_scheduled_tokens=num_tokens,
            num_running=len(self.running), emitted=emitted, emitted_index=emitted_index, finished=finished,
            preempted=preempted,
        )

    # --- helpers -----------------------------------------------------------------------------------
    def _blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.config.block_size)

    def _free(self, req: SimRequest) -> None:
        self.free_blocks += req.blocks
        req.blocks = 0

    def _preempt(self, req: SimRequest) -> None:
        # Recompute-style: drop the KV, keep the generated tokens, prefill prompt+output again later.
        self._free(req)
        req.num_computed = 0
        req.status = Status.WAITING
        req.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(req)


_IDLE = StepCost(total_s=0.0, memory_s=0.0, compute_s=0.0, overhead_s=0.0)
