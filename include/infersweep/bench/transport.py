"""The hot path: one streamed request over a shared keep-alive aiohttp pool.

Per socket read the client takes one timestamp, splits complete SSE events on blank lines and parses each
with orjson; nothing is tokenized. Timestamps are taken when the bytes arrive, before parsing, so parse time
never leaks into TTFT/ITL.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from infersweep.bench.dataset import RequestSpec
from infersweep.bench.records import RequestRecord

#: Large read buffer: aiohttp's default 64 KiB stalls long streams (vLLM #39963); SGLang uses 10 MiB.
READ_BUFSIZE = 10 * 1024 * 1024
_MAX_ERROR_BODY = 2000


def make_session(conc: int, *, total_timeout_s: float, connect_timeout_s: float) -> aiohttp.ClientSession:
    """One keep-alive pool sized for ``conc`` streams (never a session per request).

    No ``sock_read`` timeout: it re-arms a timer on every read; stalls are caught by load.StallWatchdog."""
    connector = aiohttp.TCPConnector(
        limit=conc + 8, limit_per_host=0, keepalive_timeout=120, ttl_dns_cache=300
    )
    timeout = aiohttp.ClientTimeout(total=total_timeout_s, sock_connect=connect_timeout_s)
    trace = aiohttp.TraceConfig()
    trace.on_request_chunk_sent.append(_stamp_written)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        read_bufsize=READ_BUFSIZE,
        auto_decompress=False,
        trace_configs=[trace],
    )


class IssueGate:
    """Lets one request at a time through the client's request path, from its send stamp to its write.

    On Python 3.11 aiohttp writes the body in a task scheduled behind every other ready task, so when a
    closed loop restarts many streams at once (a wave of equal-length requests ending together) each
    request's send stamp would include the request paths of all the others (~0.1 ms each: 6 ms at C = 64).
    Through the gate, a request stamps ``t_sent`` only once the previous one is on the socket, so its TTFT
    holds its own request path only; the wait is recorded as ``issue_wait`` and reported, not hidden."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._holder: RequestRecord | None = None

    async def enter(self, rec: RequestRecord) -> None:
        """Wait for the gate, then stamp ``rec.t_sent`` (and how long the wait was)."""
        t0 = time.perf_counter()
        await self._lock.acquire()
        self._holder = rec
        rec.t_sent = time.perf_counter()
        rec.issue_wait = rec.t_sent - t0

    def leave(self, rec: RequestRecord) -> None:
        """Open the gate if ``rec`` holds it (on its write, or when it failed before writing)."""
        if self._holder is rec:
            self._holder = None
            self._lock.release()


async def _stamp_written(_session: Any, ctx: Any, _params: Any) -> None:
    """aiohttp fires this right before it writes the request body (with the coalesced headers)."""
    rec, gate = ctx.trace_request_ctx
    if not rec.t_written:
        rec.t_written = time.perf_counter()
    if gate is not None:
        gate.leave(rec)


def _has_output(choice: dict[str, Any]) -> bool:
    """Chat: a role-only opening delta carries no token (as in current vLLM); everything else counts."""
    delta = choice.get("delta")
    if not delta or "role" not in delta:
        return True
    return bool(
        delta.get("content")
        or delta.get("reasoning_content")
        or delta.get("reasoning")
        or delta.get("tool_calls")
    )


async def stream_request(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    spec: RequestSpec,
    rec: RequestRecord,
    *,
    chat: bool,
    save_text: bool,
    gate: IssueGate | None = None,
) -> None:
    """Send ``spec`` and fill ``rec`` with send/arrival times, usage and any error (never raises)."""
    perf = time.perf_counter
    loads = orjson.loads
    times = rec.read_times
    counts = rec.read_events
    pieces: list[str] = []
    buf = b""
    if gate is not None:
        await gate.enter(rec)
    else:
        rec.t_sent = perf()
    try:
        async with session.post(url, data=spec.body, headers=headers, trace_request_ctx=(rec, gate)) as resp:
            if resp.status != 200:
                body = (await resp.read())[:_MAX_ERROR_BODY].decode("utf-8", "replace")
                rec.error = f"HTTP {resp.status} {resp.reason}: {body}"
                return
            content = resp.content
            now = rec.t_sent
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                now = perf()
                if buf:
                    chunk = buf + chunk
                if b"\r" in chunk:
                    chunk = chunk.replace(b"\r\n", b"\n")
                parts = chunk.split(b"\n\n")
                buf = parts.pop()
                n = 0
                for part in parts:
                    if part[:6] == b"data: ":
                        payload = part[6:]
                    elif part[:5] == b"data:":
                        payload = part[5:]
                    else:
                        # SSE comment / keep-alive ping, or an event with "event:"/"id:" lines first
                        j = part.find(b"\ndata:")
                        if j < 0:
                            continue
                        payload = part[j + 6 :].lstrip()
                    if payload == b"[DONE]":
                        continue
                    obj = loads(payload)
                    choices = obj.get("choices")
                    if choices and (not chat or _has_output(choices[0])):
                        n += 1
                        if save_text:
                            c0 = choices[0]
                            piece = (c0.get("delta") or {}).get("content") if chat else c0.get("text")
                            pieces.append(piece or "")
                    usage = obj.get("usage")
                    if usage:
                        rec.usage_prompt_tokens = usage.get("prompt_tokens")
                        rec.usage_completion_tokens = usage.get("completion_tokens")
                    if "error" in obj and not choices:
                        rec.error = (
                            f"server error event: {orjson.dumps(obj['error']).decode()[:_MAX_ERROR_BODY]}"
                        )
                if n:
                    times.append(now)
                    counts.append(n)
            tail = buf.strip()
            if tail.startswith(b"data:") and tail[5:].strip() not in (b"", b"[DONE]"):
                # a last event without the closing blank line: count it at the final read's time
                obj = loads(tail[5:].strip())
                if obj.get("choices"):
                    times.append(now)
                    counts.append(1)
                if obj.get("usage"):
                    rec.usage_prompt_tokens = obj["usage"].get("prompt_tokens")
                    rec.usage_completion_tokens = obj["usage"].get("completion_tokens")
        if not times and rec.error is None:
            rec.error = "stream ended without a token event (no TTFT); counted as failed, as vLLM does"
    except Exception as exc:  # any transport/parse failure fails this request only
        rec.error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_BODY]
    finally:
        if gate is not None:
            gate.leave(rec)  # a request that failed before its write must not hold the gate
        if save_text:
            rec.text = "".join(pieces)
