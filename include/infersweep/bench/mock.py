"""A fast mock OpenAI streaming server: the test double for the client (timing truth, capacity, tests).

Raw asyncio protocol (HTTP/1.1 keep-alive, chunked SSE) with pre-encoded event bytes, so it costs far less
per event than a framework server; run it under uvloop. It streams exactly ``max_tokens`` tokens with a
configurable TTFT and ITL, ``tokens_per_event`` tokens per SSE event (MTP-like), reports usage, and can
stamp the send time of every event per ``X-Request-Id`` (``GET /stamps``), which is the ground truth the
client's TTFT/TPOT are checked against. Fault knobs: ``fail_every`` (HTTP 500), ``short_by`` (stops early),
``prompt_delta`` (misreports prompt tokens).

    python -m infersweep.bench.mock --port 0 [--ttft-ms 0] [--itl-ms 0] [--stamp]   # prints "PORT <n>"
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class MockSettings:
    """Behaviour of the mock."""

    ttft_s: float = 0.0
    itl_s: float = 0.0
    tokens_per_event: int = 1
    model: str = "mock"
    stamp: bool = False
    fail_every: int = 0
    short_by: int = 0
    prompt_delta: int = 0
    tokenizer: Any = None  # LoadedTokenizer, for chat prompt counting
    stamps: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0
    events: int = 0


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event(obj: dict[str, Any]) -> bytes:
    return _chunk(b"data: " + orjson.dumps(obj) + b"\n\n")


class _Conn(asyncio.Protocol):
    def __init__(self, s: MockSettings) -> None:
        self.s = s
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.task: asyncio.Task[None] | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None:  # the client went away: stop streaming to it
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._try_dispatch()

    def _try_dispatch(self) -> None:
        if self.busy:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].decode("latin-1").split("\r\n")
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length", "0"))
        if len(self.buf) < end + 4 + length:
            return
        body = self.buf[end + 4 : end + 4 + length]
        self.buf = self.buf[end + 4 + length :]
        method, path, _ = head[0].split(" ", 2)
        self.busy = True
        self.task = asyncio.get_running_loop().create_task(
            self._handle(method, path, headers, body, time.perf_counter())
        )

    def _reply(self, status: str, body: bytes, ctype: str = "application/json") -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (status.encode(), ctype.encode(), len(body), body)
        )

    async def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes, t_recv: float
    ) -> None:
        try:
            if path.startswith("/v1/completions") or path.startswith("/v1/chat/completions"):
                await self._generate(path.startswith("/v1/chat"), headers, body, t_recv)
            elif path == "/health":
                self._reply("200 OK", b"")
            elif path == "/v1/models":
                self._reply("200 OK", orjson.dumps({"object": "list", "data": [{"id": self.s.model}]}))
            elif path == "/stamps" and method == "DELETE":
                self.s.stamps.clear()
                self._reply("200 OK", b"{}")
            elif path == "/stats":
                self._reply("200 OK", orjson.dumps({"requests": self.s.requests, "events": self.s.events}))
            elif path == "/stamps":
                self._reply("200 OK", orjson.dumps(self.s.stamps))
            else:
                self._reply("404 Not Found", b'{"error":"not found"}')
        finally:
            self.busy = False
            if self.buf:
                self._try_dispatch()

    def _prompt_tokens(self, req: dict[str, Any], chat: bool) -> int:
        if chat:
            if self.s.tokenizer is not None:
                return len(self.s.tokenizer.encode(self.s.tokenizer.apply_chat_template(req["messages"])))
            return sum(len(str(m.get("content", "")).split()) for m in req["messages"])
        prompt = req.get("prompt")
        if isinstance(prompt, list):
            return len(prompt)
        if self.s.tokenizer is not None:
            return len(self.s.tokenizer.encode(str(prompt)))
        return len(str(prompt).split())

    async def _generate(self, chat: bool, headers: dict[str, str], body: bytes, t_recv: float) -> None:
        s = self.s
        s.requests += 1
        if s.fail_every and s.requests % s.fail_every == 0:
            self._reply("500 Internal Server Error", b'{"error":"injected failure"}')
            return
        req = orjson.loads(body)
        n = int(req.get("max_completion_tokens") or req.get("max_tokens") or 16) - s.short_by
        n = max(n, 1)
        p = self._prompt_tokens(req, chat) + s.prompt_delta
        k = s.tokens_per_event
        n_events = math.ceil(n / k)
        s.events += n_events
        if chat:
            tok = _event({"id": "c", "object": "chat.completion.chunk", "model": s.model,
                          "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": None}]})  # fmt: skip
            last = _event({"id": "c", "object": "chat.completion.chunk", "model": s.model,
                           "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": "length"}]})  # fmt: skip
            first_extra = _event({"id": "c", "object": "chat.completion.chunk", "model": s.model,
                                  "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})  # fmt: skip
        else:
            tok = _event({"id": "c", "object": "text_completion", "model": s.model,
                          "choices": [{"index": 0, "text": " tok", "logprobs": None, "finish_reason": None}]})  # fmt: skip
            last = _event({"id": "c", "object": "text_completion", "model": s.model,
                           "choices": [{"index": 0, "text": " tok", "logprobs": None, "finish_reason": "length"}]})  # fmt: skip
            first_extra = b""
        tail = (
            _event({"id": "c", "model": s.model, "choices": [],
                    "usage": {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}})
            + _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"
        )  # fmt: skip
        assert self.transport is not None
        w = self.transport.write
        w(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        perf = time.perf_counter
        sends: list[float] = []
        if s.ttft_s > 0:
            await asyncio.sleep(s.ttft_s - (perf() - t_recv))
        if s.itl_s <= 0:
            # zero delay: the whole stream in one write (what a saturated server's socket looks like)
            t = perf()
            w(first_extra + tok * (n_events - 1) + last + tail)
            sends = [t] * n_events
        else:
            sends.append(perf())  # stamped before the write: the truth can never trail the client's read
            w(first_extra + (tok if n_events > 1 else last))
            for i in range(1, n_events):
                await asyncio.sleep(s.itl_s)
                sends.append(perf())
                w(tok if i < n_events - 1 else last)
            w(tail)
        if s.stamp:
            rid = headers.get("x-request-id", str(s.requests))
            s.stamps[rid] = {"recv": t_recv, "sends": sends, "tokens": n}


async def serve(settings: MockSettings, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Start the mock on ``host:port`` (0 = a free port) in the running loop; returns the server."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Conn(settings), host, port, backlog=4096)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: run until killed; prints ``PORT <n>`` once listening."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttft-ms", type=float, default=0.0)
    ap.add_argument("--itl-ms", type=float, default=0.0)
    ap.add_argument("--tokens-per-event", type=int, default=1)
    ap.add_argument("--model", default="mock")
    ap.add_argument("--stamp", action="store_true", help="record per-event send times for GET /stamps")
    ap.add_argument("--tokenizer", default=None, help="tokenizer dir, to count chat prompts exactly")
    args = ap.parse_args(argv)
    tok = None
    if args.tokenizer:
        from infersweep.bench.tokenizer import load_tokenizer

        tok = load_tokenizer(args.tokenizer)
    settings = MockSettings(
        ttft_s=args.ttft_ms / 1000.0, itl_s=args.itl_ms / 1000.0, tokens_per_event=args.tokens_per_event,
        model=args.model, stamp=args.stamp, tokenizer=tok,
    )  # fmt: skip

    async def run() -> None:
        server = await serve(settings, args.host, args.port)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()

    try:
        import uvloop

        uvloop.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
