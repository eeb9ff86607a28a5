"""Readiness shared by every backend: poll /health, then /v1/models, with a deadline; fail fast on death.

Backends pass two callables: `is_alive()` (is the process/container still running?) and `logs(n)` (its last
n log lines). The wait ends as soon as the server answers, dies, or the deadline passes; a dead server is
reported at once with its last 50 log lines instead of waiting out the deadline. Every HTTP call has a
timeout. `/version` is read last so the result can record the engine version.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from infersweep.engines.base import EngineError

LOG_TAIL_LINES = 50


@dataclass
class ReadyInfo:
    """What a ready server told us."""

    version: str | None  # /version "version" (e.g. "0.11.0", or "sim-0.1.0" for the simulator)
    version_info: dict[str, Any] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)
    waited_s: float = 0.0


def http_get(url: str, timeout_s: float) -> tuple[int, bytes]:
    """GET `url` with a timeout. Returns (status, body); status 0 when the server could not be reached."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (http URL we built)
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read() if exc.fp else b""
    except (urllib.error.URLError, OSError, ValueError):
        return 0, b""


def _models(body: bytes) -> list[str]:
    try:
        data = orjson.loads(body)
        return [str(m["id"]) for m in data.get("data", []) if isinstance(m, dict) and "id" in m]
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return []


def probe_version(base_url: str, *, timeout_s: float = 5.0) -> tuple[str | None, dict[str, Any]]:
    """(`version` string, full `/version` JSON) or (None, {}) when the server has no /version."""
    status, body = http_get(f"{base_url}/version", timeout_s)
    if status != 200:
        return None, {}
    try:
        info = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, {}
    if not isinstance(info, dict):
        return None, {}
    v = info.get("version")
    return (str(v) if v is not None else None), info


#: The health endpoint that says "ready" per framework. SGLang's `/health` is 200 without generating once
#: the HTTP server is up (503 while starting); `/health_generate` runs a real one-token generation, so a
#: server whose scheduler is wedged is not taken for ready. Others: `/health`.
HEALTH_PATHS: dict[str, str] = {"sglang": "/health_generate"}


def health_path(framework: str | None) -> str:
    """The readiness endpoint of a framework's server."""
    return HEALTH_PATHS.get(framework or "", "/health")


def wait_ready(
    base_url: str,
    *,
    deadline_s: float,
    is_alive: Callable[[], bool],
    logs: Callable[[int], str],
    what: str = "server",
    poll_interval_s: float = 2.0,
    http_timeout_s: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    health: str = "/health",
) -> ReadyInfo:
    """Block until `base_url` serves `health` (200) and a non-empty /v1/models; raise EngineError otherwise.

    Polls quickly at first (0.1 s, doubling up to `poll_interval_s`) so fast servers are not kept waiting.
    """
    base_url = base_url.rstrip("/")
    start = clock()
    end = start + deadline_s
    interval = 0.1
    stage = health
    while True:
        if not is_alive():
            raise EngineError(f"{what} exited before it was ready (while waiting for {stage} at {base_url})",
                              log_tail=logs(LOG_TAIL_LINES))
        remaining = end - clock()
        if remaining <= 0:
            raise EngineError(f"{what} not ready after {deadline_s:.0f} s (still waiting for {stage} at "
                              f"{base_url})", log_tail=logs(LOG_TAIL_LINES))
        timeout = max(0.1, min(http_timeout_s, remaining))
        status, _ = http_get(f"{base_url}{health}", timeout)
        if status == 200:
            stage = "/v1/models"
            status, body = http_get(f"{base_url}/v1/models", timeout)
            models = _models(body) if status == 200 else []
            if models:
                version, info = probe_version(base_url, timeout_s=timeout)
                return ReadyInfo(version=version, version_info=info, models=models, waited_s=clock() - start)
        sleep(min(interval, max(0.0, end - clock())))
        interval = min(interval * 2, poll_interval_s)


def tail_lines(text: str, n: int | None) -> str:
    """The last n lines of text (all when n is None)."""
    if n is None:
        return text
    lines = text.splitlines()
    return "\n".join(lines[-n:]) if n > 0 else ""
