"""wait_ready against a real local HTTP server (threads) and fake liveness."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from infersweep.engines.base import EngineError
from infersweep.engines.readiness import wait_ready


class _Handler(http.server.BaseHTTPRequestHandler):
    health_failures = 0
    calls: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).calls.append(self.path)
        if self.path == "/health":
            if type(self).health_failures > 0:
                type(self).health_failures -= 1
                self.send_response(503)
                self.end_headers()
                return
            self._json({})
        elif self.path == "/v1/models":
            self._json({"object": "list", "data": [{"id": "m1", "object": "model"}]})
        elif self.path == "/version":
            self._json({"version": "0.11.0"})
        else:
            self.send_response(404)
            self.end_headers()

    def _json(self, obj: object) -> None:
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.calls = []
    _Handler.health_failures = 3
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_ready_after_health_then_models_records_version(server: str) -> None:
    info = wait_ready(server, deadline_s=60, is_alive=lambda: True, logs=lambda n: "", poll_interval_s=0.05)
    assert info.version == "0.11.0" and info.models == ["m1"]
    assert _Handler.calls.count("/health") == 4  # three 503s, then 200
    assert _Handler.calls[-2:] == ["/v1/models", "/version"]


def test_dead_server_fails_fast_with_the_last_50_lines(server: str) -> None:
    lines = [f"log line {i}" for i in range(1, 81)]
    with pytest.raises(EngineError) as exc:
        wait_ready(server, deadline_s=3600, is_alive=lambda: False,
                   logs=lambda n: "\n".join(lines[-n:]), what="test server")
    msg = str(exc.value)
    assert "exited before it was ready" in msg
    assert "log line 31" in msg and "log line 80" in msg and "log line 30\n" not in msg
    assert exc.value.log_tail.count("\n") == 49


def test_deadline_is_enforced_without_waiting() -> None:
    now = [0.0]

    def clock() -> float:
        return now[0]

    def sleep(s: float) -> None:
        now[0] += s

    with pytest.raises(EngineError, match=r"not ready after 30 s \(still waiting for /health"):
        wait_ready("http://127.0.0.1:9", deadline_s=30, is_alive=lambda: True, logs=lambda n: "tail",
                   clock=clock, sleep=sleep, http_timeout_s=0.2)
    assert now[0] >= 30


def test_secret_flags_are_redacted_in_logged_argv() -> None:
    from infersweep.engines.process import redact_argv

    assert redact_argv(["vllm", "serve", "m", "--api-key", "s3cret", "--hf-token=abc", "--port", "1"]) == [
        "vllm", "serve", "m", "--api-key", "***", "--hf-token=***", "--port", "1"]
