"""A local OpenAI-compatible chat server for the eval tests (aiohttp, in a background thread).

It records every request body, tracks the peak number of requests in flight, answers through a
caller-supplied `reply(body) -> str` and can fail the first requests (`fail_first`, `fail_status`)
to exercise retries. Binds 127.0.0.1 on a free port; `stop()` joins the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

Reply = Callable[[dict[str, Any]], "str | dict[str, Any]"]  # text, or a whole message object


def echo_last_question(body: dict[str, Any]) -> str:
    return "I think.\n#### 0"


class MockChatServer:
    def __init__(
        self,
        reply: Reply = echo_last_question,
        *,
        fail_first: int = 0,
        fail_status: int = 503,
        reasoning_only: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        self.reply = reply
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.reasoning_only = reasoning_only
        self.delay_s = delay_s
        self.bodies: list[dict[str, Any]] = []
        self.failures = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MockChatServer:
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("mock chat server did not start")
        return self

    def stop(self) -> None:
        """Shut the server down and join its thread; safe to call twice."""
        loop, self._loop = self._loop, None
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=30)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout=30)

    def __enter__(self) -> MockChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._startup())
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _startup(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.bodies.append(body)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            fail = self.failures < self.fail_first
            if fail:
                self.failures += 1
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if fail:
                return web.json_response({"error": {"message": "busy"}}, status=self.fail_status)
            reply = self.reply(body)
            if isinstance(reply, dict):
                message = {"role": "assistant", **reply}
            elif self.reasoning_only:
                message = {"role": "assistant", "content": None, "reasoning_content": reply}
            else:
                message = {"role": "assistant", "content": reply}
            return web.json_response(
                {
                    "id": "chatcmpl-mock",
                    "object": "chat.completion",
                    "model": body.get("model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            )
        finally:
            with self._lock:
                self.in_flight -= 1
