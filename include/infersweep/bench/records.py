"""`RequestRecord`: the raw timestamps of one streamed request, from which every metric is derived."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RequestRecord:
    """What the client observed for one request. Times are ``time.perf_counter()`` seconds.

    Stream events are stored per socket read: ``read_times[k]`` is when read ``k`` arrived and
    ``read_events[k]`` how many token-carrying SSE events it held. Events delivered in the same read arrived
    together, so their mutual gaps are 0 (vLLM stamps each after parsing, which only adds parse time).
    """

    index: int
    prompt_len: int  # intended ISL
    output_len: int  # intended OSL
    t_sched: float = 0.0  # when the request became eligible to send (arrival time / run start)
    t_sent: float = 0.0  # just before the HTTP request is written (after the concurrency gate)
    read_times: list[float] = field(default_factory=list)
    read_events: list[int] = field(default_factory=list)
    usage_prompt_tokens: int | None = None
    usage_completion_tokens: int | None = None
    error: str | None = None
    text: str = ""
    # when the request bytes were handed to the socket (aiohttp's chunk-sent hook fires right before the
    # write); t_written − t_sent is the client's own request-path time, which vLLM's TTFT includes too
    t_written: float = 0.0
    # time spent waiting for the issue gate (another request of this client was being written); it
    # happens before t_sent, so it is not in TTFT, and is reported as the client's issue delay
    issue_wait: float = 0.0

    @property
    def success(self) -> bool:
        """A request counts as completed when it ended without error and streamed ≥ 1 token event (vLLM)."""
        return self.error is None and bool(self.read_times)

    @property
    def ttft(self) -> float:
        """Seconds from send to the first token-carrying event (0 on failure, like vLLM)."""
        return self.read_times[0] - self.t_sent if self.success else 0.0

    @property
    def latency(self) -> float:
        """E2EL: seconds from send to the last token-carrying event (the usage chunk and [DONE] excluded)."""
        return self.read_times[-1] - self.t_sent if self.success else 0.0

    @property
    def t_end(self) -> float:
        """Absolute time the request finished (last token event), or its send time when it failed."""
        return self.read_times[-1] if self.read_times else self.t_sent

    @property
    def num_events(self) -> int:
        """Token-carrying SSE events received."""
        return sum(self.read_events)

    @property
    def output_tokens(self) -> int:
        """Output tokens: the server's usage.completion_tokens; without usage, the event count."""
        if self.usage_completion_tokens is not None:
            return self.usage_completion_tokens
        return self.num_events

    @property
    def input_tokens(self) -> int:
        """Input tokens: the server's usage.prompt_tokens, else the intended length (vLLM does the same)."""
        return self.usage_prompt_tokens if self.usage_prompt_tokens is not None else self.prompt_len

    def itl(self) -> list[float]:
        """Gaps between consecutive token events of this request (seconds), one per event after the first."""
        out: list[float] = []
        prev = self.read_times[0] if self.read_times else 0.0
        for k, (t, n) in enumerate(zip(self.read_times, self.read_events, strict=True)):
            if k:
                out.append(t - prev)
                prev = t
            out.extend([0.0] * (n - 1))
        return out

    def to_tuple(self) -> tuple:
        """Compact picklable form for the multi-process mode."""
        return (
            self.index, self.prompt_len, self.output_len, self.t_sched, self.t_sent, self.read_times,
            self.read_events, self.usage_prompt_tokens, self.usage_completion_tokens, self.error, self.text,
            self.t_written, self.issue_wait,
        )  # fmt: skip

    @classmethod
    def from_tuple(cls, t: tuple) -> RequestRecord:
        """Inverse of :meth:`to_tuple`."""
        return cls(*t)
