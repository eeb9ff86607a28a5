"""One benchmark point in one process: warm-up, measured phase, health sampling, progress and the stall abort.

Each phase is watched: every ``progress_interval_s`` a line (completed/failed/in flight, elapsed) goes to
stderr, and when requests are in flight but the server has shown no sign of life (no token event, no finished
request) for ``stall_timeout_s`` plus a grace (`_abort_grace`: each request's own stall verdict comes first),
the phase is aborted: a server that accepts connections and never answers
would otherwise hold the point for (warm-ups + prompts) / C stall windows, hours at the 900 s default.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

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
    #: Why the point was cut short (the server stalled), or None.
    aborted: str | None = None

    @property
    def duration(self) -> float:
        """Whole-run duration: first dispatch to the last request's completion (as vLLM)."""
        return self.t_end - self.t_start


class PhaseTracker:
    """What one phase of one client process has sent, finished and in flight, and when the server last
    showed life: the source of the progress line and of the stall abort."""

    def __init__(self, label: str, phase: str, total: int) -> None:
        self.label, self.phase, self.total = label, phase, total
        self.t0 = time.perf_counter()
        self.last_life = self.t0
        self.completed = 0
        self.failed = 0
        self.seen: dict[int, RequestRecord] = {}  # by request index
        self.ok: set[int] = set()  # indexes that finished successfully
        self.closed = False  # the phase was aborted: no new request may go out
        self.refused: set[int] = set()  # indexes refused after the abort
        self._inflight: dict[int, RequestRecord | None] = {}
        self._idle_since: float | None = self.t0
        self._next = 0

    @property
    def inflight(self) -> int:
        """Requests sent and not finished."""
        return len(self._inflight)

    def started(self, rec: RequestRecord | None) -> int:
        """Note a request going out; returns its token for :meth:`finished`."""
        if self._idle_since is not None:
            # silence counts only while something waits on the server (rate mode can idle between arrivals);
            # a lane refilled right after a stalled request was cancelled keeps the silence it inherited
            self.last_life += time.perf_counter() - self._idle_since
            self._idle_since = None
        self._next += 1
        self._inflight[self._next] = rec
        if rec is not None:
            self.seen[rec.index] = rec
        return self._next

    def finished(self, token: int, rec: RequestRecord | None, exc: BaseException | None) -> None:
        """Note a request ending (``exc`` is what ended it, if anything)."""
        self._inflight.pop(token, None)
        if not self._inflight:
            self._idle_since = time.perf_counter()
        if rec is not None and rec.read_times:  # its events were signs of life even if it is cancelled now
            self.last_life = max(self.last_life, rec.read_times[-1])
        if isinstance(exc, asyncio.CancelledError):  # stalled or aborted by us: not a sign of life
            self.failed += 1
            return
        self.last_life = time.perf_counter()
        if exc is None and (rec is None or (rec.error is None and rec.read_times)):
            self.completed += 1
            if rec is not None:
                self.ok.add(rec.index)
        else:
            self.failed += 1

    def silent_for(self, now: float) -> float | None:
        """Seconds without a sign of life from the server while requests wait on it; None when none waits."""
        if not self._inflight:
            return None
        last = self.last_life
        for rec in self._inflight.values():
            if rec is not None and rec.read_times:
                last = max(last, rec.read_times[-1])
        return now - last

    def line(self, now: float) -> str:
        """The progress line."""
        return (f"{self.label} {self.phase}: {self.completed}/{self.total} completed, {self.failed} failed, "
                f"{self.inflight} in flight, {now - self.t0:.0f} s elapsed")

    def records(self, specs: Sequence[RequestSpec], error: str, not_sent: str) -> list[RequestRecord]:
        """One record per spec after an abort: unfinished requests fail with ``error``, unsent ones with
        ``not_sent`` (stamped now, so their queue and start times stay meaningful)."""
        now = time.perf_counter()
        out: list[RequestRecord] = []
        for s in specs:
            rec = self.seen.get(s.index)
            if rec is None:
                rec = RequestRecord(s.index, s.prompt_len, s.output_len, t_sched=now, t_sent=now, error=not_sent)
            elif s.index in self.refused:
                rec.error = not_sent
            elif s.index not in self.ok and rec.error is None:
                rec.error = error
            out.append(rec)
        return out


class PhaseAborted(Exception):
    """Raised instead of sending a request once its phase was aborted; the transport records it as that
    request's error and the lane moves on, so the phase drains at once."""


class _TrackedRequest:
    """``session.post(...)``'s context manager, reporting to the tracker when the request starts and ends."""

    def __init__(self, inner: Any, tracker: PhaseTracker, rec: RequestRecord | None) -> None:
        self._inner, self._tracker, self._rec = inner, tracker, rec
        self._token = 0

    async def __aenter__(self) -> aiohttp.ClientResponse:
        self._token = self._tracker.started(self._rec)
        try:
            resp: aiohttp.ClientResponse = await self._inner.__aenter__()
        except BaseException as exc:
            self._tracker.finished(self._token, self._rec, exc)
            raise
        return resp

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            await self._inner.__aexit__(et, exc, tb)
        finally:
            self._tracker.finished(self._token, self._rec, exc)


class _TrackedSession:
    """The shared session as ``drive`` sees it: ``post`` is passed through and tracked.

    ``drive`` owns the request records; the transport hands each one to aiohttp as ``trace_request_ctx``
    (``(record, gate)``), which is how the tracker sees them without reaching into the load generator."""

    def __init__(self, session: aiohttp.ClientSession, tracker: PhaseTracker) -> None:
        self._session, self._tracker = session, tracker

    def post(self, url: Any, **kwargs: Any) -> _TrackedRequest:
        """``ClientSession.post``, tracked."""
        ctx = kwargs.get("trace_request_ctx")
        rec = ctx[0] if isinstance(ctx, tuple) and ctx and isinstance(ctx[0], RequestRecord) else None
        if self._tracker.closed:
            if rec is not None:
                self._tracker.refused.add(rec.index)
            raise PhaseAborted("not sent: the phase was aborted")
        return _TrackedRequest(self._session.post(url, **kwargs), self._tracker, rec)


def _emit(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _watched_drive(
    session: aiohttp.ClientSession,
    cfg: BenchConfig,
    specs: Sequence[RequestSpec],
    conc: int,
    t_start: float,
    arrivals: Sequence[float] | None,
    tracker: PhaseTracker,
) -> tuple[list[RequestRecord], str | None]:
    """``drive`` one phase under progress lines and the stall abort; returns its records and, when the
    server stalled, why the phase was aborted."""
    proxy: Any = _TrackedSession(session, tracker)  # duck-typed: drive only ever calls post()
    task = asyncio.ensure_future(drive(proxy, cfg, specs, conc, t_start, arrivals))
    stall, every = cfg.stall_timeout_s, cfg.progress_interval_s
    tick = min(x for x in (1.0, every, stall / 4 if stall else None) if x)
    next_line = tracker.t0 + every if every else float("inf")
    aborted: str | None = None
    try:
        while aborted is None:
            done, _ = await asyncio.wait({task}, timeout=tick)
            if done:
                return task.result(), None
            now = time.perf_counter()
            if now >= next_line:
                _emit(tracker.line(now))
                next_line = now + (every or 0.0)
            silent = tracker.silent_for(now)
            # Each request's own stall timer fires at `stall`; the phase is cut only a grace later, so a
            # request that stalled fails as "stalled" (its own verdict) and the abort is left to what remains:
            # a server still silent after its requests' stall windows, with more requests waiting to go.
            if stall and silent is not None and silent > stall + _abort_grace(stall, tick):
                n = tracker.inflight
                aborted = (f"server stalled: no response for {stall:g} s with {n} request{'s' if n != 1 else ''} "
                           f"in flight during the {tracker.phase} (--stall-timeout-s {stall:g}); point aborted")
                _emit(tracker.line(now))
                _emit(f"{tracker.label}: {aborted}")
                tracker.closed = True
    finally:
        # The load generator's stall watchdog may swallow a cancellation that races with its own (it cannot
        # tell them apart) and move on to the next request: cancel until the phase is really over; requests
        # it would still send are refused by the tracked session.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if not task.cancelled() and aborted is not None:
            task.exception()  # retrieved: an aborted phase reports the abort, however the drive ended
    recs = tracker.records(
        specs,
        f"aborted: no response from the server for {stall:g} s (--stall-timeout-s)",
        f"not sent: the point was aborted after the server was silent for {stall:g} s (--stall-timeout-s)",
    )
    return recs, aborted


def _abort_grace(stall: float, tick: float) -> float:
    """Seconds past the stall window before a silent phase is aborted: half of it (at most 60 s), and at least
    two watch ticks, so the requests' own stall timers (same event loop, due at `stall`) always fire first."""
    return max(2 * tick, min(stall / 2, 60.0))


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
    label = f"bench conc={cfg.conc}" + (f" (worker, {conc} streams)" if conc != cfg.conc else "")
    aborted: str | None = None
    async with session:
        warm_recs: list[RequestRecord] = []
        if warm:
            tracker = PhaseTracker(label, "warm-up", len(warm))
            warm_recs, aborted = await _watched_drive(session, cfg, warm, conc, time.perf_counter(), None, tracker)
        t_start = await start_gate() if start_gate else time.perf_counter()
        t_start_unix = t_start + unix_offset()
        if aborted is None:
            monitor = HealthMonitor()
            monitor.start()
            tracker = PhaseTracker(label, "measurement", len(specs))
            recs, aborted = await _watched_drive(session, cfg, specs, conc, t_start, arrivals, tracker)
            t_end = time.perf_counter()
            health = await monitor.stop()
        else:  # the server stalled in warm-up: measuring it would only wait out the stall window again
            stall = cfg.stall_timeout_s or 0.0
            recs = PhaseTracker(label, "measurement", len(specs)).records(
                specs, "", f"not sent: the server stalled during warm-up (--stall-timeout-s {stall:g})")
            t_end = time.perf_counter()
            health = HealthSample()
        t_end_unix = t_end + unix_offset()
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
        aborted=aborted,
    )
