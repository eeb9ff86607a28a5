"""The transport floor: the least any client can do against the stamping mock, over raw sockets.

A closed-loop client with one keep-alive connection per stream, a pre-built HTTP/1.1 request and no parsing
beyond counting token events (the mock's completions events all carry ``"text":``) and spotting the end of
the chunked body. It stamps exactly where our client does (send: just before the write; token: at the read
that carried it), so "raw − truth" is what the loopback path and the VM's wake-ups cost by themselves, and
"ours − raw" is the client's own share of its timing error. Used only by perf/client_timing_truth.py.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson


@dataclass
class RawRecord:
    """One request: send stamp and the read times of its token events (one entry per read)."""

    rid: str
    t_sent: float = 0.0
    reads: list[tuple[float, int]] = field(default_factory=list)  # (time, token events in that read)

    @property
    def ttft(self) -> float:
        return self.reads[0][0] - self.t_sent

    @property
    def tpot(self) -> float:
        n = sum(k for _, k in self.reads)
        return (self.reads[-1][0] - self.reads[0][0]) / (n - 1) if n > 1 else 0.0


class _Stream(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.rec: RawRecord | None = None
        self.done: asyncio.Future[None] | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        t = time.perf_counter()
        rec = self.rec
        if rec is None:
            return
        k = data.count(b'"text":')
        if k:
            rec.reads.append((t, k))
        # the terminal zero-length chunk may straddle two reads
        joined = self.tail + data
        if b"\r\n0\r\n\r\n" in joined and self.done is not None and not self.done.done():
            self.done.set_result(None)
        self.tail = joined[-8:]

    def send(self, rec: RawRecord, request: bytes) -> asyncio.Future[None]:
        assert self.transport is not None
        self.rec, self.tail = rec, b""
        self.done = asyncio.get_running_loop().create_future()
        rec.t_sent = time.perf_counter()
        self.transport.write(request)
        return self.done


def _request(port: int, rid: str, prompt: list[int], osl: int) -> bytes:
    body = orjson.dumps(
        {"model": "mock", "prompt": prompt, "max_tokens": osl, "stream": True, "ignore_eos": True,
         "stream_options": {"include_usage": True}}
    )  # fmt: skip
    return (
        b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"X-Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s" % (port, rid.encode(), len(body), body)
    )


async def run_raw(
    port: int, warm: list[list[int]], prompts: list[list[int]], osl: int, conc: int
) -> list[RawRecord]:
    """Warm ``conc`` keep-alive connections with ``warm``, then run ``prompts`` in a closed loop at ``conc``."""
    loop = asyncio.get_running_loop()
    streams = []
    for _ in range(conc):
        _, proto = await loop.create_connection(_Stream, "127.0.0.1", port)
        streams.append(proto)

    async def phase(batch: list[list[int]], prefix: str) -> list[RawRecord]:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(len(batch)):
            queue.put_nowait(i)
        done: list[RawRecord] = []

        async def worker(stream: _Stream) -> None:
            while not queue.empty():
                i = queue.get_nowait()
                rec = RawRecord(rid=f"{prefix}-{i}")
                await asyncio.wait_for(stream.send(rec, _request(port, rec.rid, batch[i], osl)), 120)
                done.append(rec)

        await asyncio.gather(*(worker(s) for s in streams))
        return done

    await phase(warm, "rawwarm")
    records = await phase(prompts, "raw")
    for s in streams:
        assert s.transport is not None
        s.transport.close()
    return records
