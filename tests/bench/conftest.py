"""Fixtures for the benchmark-client tests: the tokenizer fixture and in-test mock OpenAI servers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.procs import stop_process_groups

TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "tokenizer"


@pytest.fixture(scope="session")
def tokenizer_dir() -> Path:
    return TOKENIZER_DIR


class ServerThread:
    """Runs an asyncio server factory in a background thread's own loop; ``url`` once started."""

    def __init__(self, factory: Any) -> None:
        self._factory = factory
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self.state: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.url, self.state, self._cleanup = self.loop.run_until_complete(self._factory())
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._cleanup())
        self.loop.close()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("mock server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)


def aiohttp_openai_mock(
    *,
    fail_every: int = 0,
    prompt_delta: int = 0,
    short_by: int = 0,
    tokens_per_event: int = 1,
    crlf: bool = False,
) -> Any:
    """An aiohttp.web OpenAI-compatible streaming mock (independent of infersweep's own mock)."""
    from aiohttp import web

    state: dict[str, Any] = {"requests": 0, "bodies": []}

    async def completions(request: web.Request) -> web.StreamResponse:
        state["requests"] += 1
        body = await request.json()
        state["bodies"].append(body)
        if fail_every and state["requests"] % fail_every == 0:
            return web.json_response({"error": "injected"}, status=500)
        chat = request.path.endswith("chat/completions")
        n = int(body.get("max_completion_tokens") or body["max_tokens"]) - short_by
        p = (len(body["prompt"]) if not chat else 10) + prompt_delta
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        sep = b"\r\n\r\n" if crlf else b"\n\n"
        if chat:
            role = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
            await resp.write(b"data: " + orjson.dumps(role) + sep)
        sent = 0
        while sent < n:
            k = min(tokens_per_event, n - sent)
            sent += k
            choice = {"index": 0, "delta": {"content": "x" * k}} if chat else {"index": 0, "text": "x" * k}
            await resp.write(b": keep-alive comment" + sep)
            prefix = b"event: completion\r\nid: 1\r\n" if crlf else b""  # SSE fields before data:
            await resp.write(prefix + b"data: " + orjson.dumps({"choices": [choice]}) + sep)
            await asyncio.sleep(0)
        usage = {"prompt_tokens": p, "completion_tokens": n, "total_tokens": p + n}
        await resp.write(b"data: " + orjson.dumps({"choices": [], "usage": usage}) + sep)
        await resp.write(b"data: [DONE]" + sep)
        await resp.write_eof()
        return resp

    async def factory() -> tuple[str, dict[str, Any], Any]:
        app = web.Application()
        app.router.add_post("/v1/completions", completions)
        app.router.add_post("/v1/chat/completions", completions)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}", state, runner.cleanup

    return factory


def package_mock(**settings: Any) -> Any:
    """infersweep's fast raw-protocol mock (stamps send times) as a server factory."""
    from infersweep.bench.mock import MockSettings, serve

    s = MockSettings(**settings)

    async def factory() -> tuple[str, MockSettings, Any]:
        server = await serve(s)
        port = server.sockets[0].getsockname()[1]

        async def cleanup() -> None:
            server.close()
            await asyncio.sleep(0)  # let connection_lost cancel the streaming handlers

        return f"http://127.0.0.1:{port}", s, cleanup

    return factory


@pytest.fixture
def aiohttp_mock() -> Iterator[ServerThread]:
    with ServerThread(aiohttp_openai_mock()) as srv:
        yield srv


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def sim_server(tokenizer_dir: Path, *args: str) -> Iterator[str]:
    """`infersweep sim serve` (extra CLI `args`) in its own process group; yields its URL once /health is 200.

    Skips when the simulator cannot start here; stops the whole group afterwards."""
    try:
        import infersweep.engines.sim.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"simulated engine not available: {exc}")
    port = _free_port()
    cmd = [sys.executable, "-m", "infersweep.cli", "sim", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--model", "sim-model", "--tokenizer", str(tokenizer_dir), *args]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.skip(f"sim serve exited rc={proc.returncode}: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("sim serve did not become healthy within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        stop_process_groups([proc], grace_s=15)
