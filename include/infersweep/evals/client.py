"""Async OpenAI-compatible chat client for the eval: bounded concurrency, timeouts, counted retries.

Transient failures (connection errors, timeouts, HTTP 408/429/5xx, a body that is not JSON) are
retried up to `max_retries` times with lm-eval's backoff (0.5·2^n s clamped to [1, 10]); any other
HTTP error is permanent and fails the request at once. The answer text is `message.content`, or
`message.reasoning_content` when content is empty, as InferenceX's lm-eval patch reads it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from infersweep.faults.errors import InfersweepError

REQUEST_TIMEOUT_S = 1800.0
MAX_RETRIES = 5
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class EvalRequestError(InfersweepError, RuntimeError):
    """A chat request failed permanently (or exhausted its retries)."""

    kind = "eval_request_failed"
    transient = False

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1, transient: bool = False) -> None:
        super().__init__(message, transient=transient)
        self.status = status
        self.attempts = attempts


@dataclass(frozen=True)
class ChatReply:
    """The extracted answer text plus what the request cost."""

    text: str
    latency_s: float
    attempts: int
    finish_reason: str | None
    used_reasoning_content: bool
    raw: dict[str, Any]


@dataclass(frozen=True)
class RetryPolicy:
    """Retry budget and backoff (tenacity's `wait_exponential(multiplier=0.5, min=1, max=10)`)."""

    max_retries: int = MAX_RETRIES
    multiplier: float = 0.5
    min_wait_s: float = 1.0
    max_wait_s: float = 10.0

    def wait_s(self, retry_number: int) -> float:
        """Seconds to sleep before retry `retry_number` (1-based)."""
        return max(self.min_wait_s, min(self.max_wait_s, self.multiplier * 2 ** (retry_number - 1)))


def chat_completions_url(base_url: str) -> str:
    """Accept a server root, a `/v1` base or the full endpoint; return the chat-completions URL."""
    url = base_url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if url.endswith("/v1"):
        return f"{url}/chat/completions"
    return f"{url}/v1/chat/completions"


def extract_text(body: dict[str, Any]) -> tuple[str, str | None, bool]:
    """(answer text, finish_reason, used_reasoning_content) from a chat-completions body."""
    choices = body.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return "", None, False
    choice = choices[0]
    message = choice.get("message") or {}
    content = message.get("content")
    if content in (None, "", []):
        reasoning = message.get("reasoning_content") or ""
        return (reasoning if isinstance(reasoning, str) else ""), choice.get("finish_reason"), bool(reasoning)
    return (content if isinstance(content, str) else str(content)), choice.get("finish_reason"), False


class ChatClient:
    """One aiohttp session shared by all eval requests; use as an async context manager."""

    def __init__(
        self,
        base_url: str,
        *,
        concurrency: int,
        timeout_s: float = REQUEST_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        api_key: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.url = chat_completions_url(base_url)
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None
        self._semaphore = asyncio.Semaphore(concurrency)
        self.retries = 0  # transient failures that were retried, over the client's lifetime

    async def __aenter__(self) -> ChatClient:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            headers=self._headers,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def complete(self, payload: dict[str, Any]) -> ChatReply:
        """POST one payload (holding a concurrency slot per attempt) and return the extracted reply."""
        attempt = 0
        while True:
            attempt += 1
            async with self._semaphore:
                started = time.perf_counter()
                try:
                    body = await self._post(payload, attempt)
                except EvalRequestError as exc:
                    if not exc.transient or attempt > self.retry.max_retries:
                        exc.attempts = attempt
                        raise
                    failure: EvalRequestError | None = exc
                else:
                    failure = None
                    latency = time.perf_counter() - started
            if failure is None:
                text, finish_reason, used_reasoning = extract_text(body)
                return ChatReply(text, latency, attempt, finish_reason, used_reasoning, body)
            self.retries += 1
            # Back off outside the semaphore so a sleeping retry does not hold a slot.
            await asyncio.sleep(self.retry.wait_s(attempt))

    async def _post(self, payload: dict[str, Any], attempt: int) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("ChatClient used outside `async with`")
        try:
            async with self._session.post(self.url, json=payload) as response:
                text = await response.text()
                if response.status >= 400:
                    raise EvalRequestError(
                        f"POST {self.url} -> HTTP {response.status}: {text[:300]}",
                        status=response.status,
                        attempts=attempt,
                        transient=response.status in TRANSIENT_STATUS,
                    )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise EvalRequestError(
                f"POST {self.url} failed: {type(exc).__name__}: {exc}", attempts=attempt, transient=True
            ) from exc
        try:
            import orjson

            body = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise EvalRequestError(
                f"POST {self.url} returned a non-JSON body: {text[:200]!r}", attempts=attempt, transient=True
            ) from exc
        if not isinstance(body, dict):
            raise EvalRequestError(f"POST {self.url} returned {type(body).__name__}, not an object", attempts=attempt)
        return body
