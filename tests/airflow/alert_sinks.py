"""Local stand-ins for what alerts and run notes talk to: an SMTP sink, a webhook receiver and the Airflow
REST API's token + dag-run PATCH endpoints, each on 127.0.0.1 in a thread of the test process."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Sink:
    """What a local server received."""

    url: str
    host: str
    port: int
    received: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@contextmanager
def _serving(server: socketserver.ThreadingTCPServer, scheme: str, status: int = 200) -> Iterator[Sink]:
    """Serve `server` from a daemon thread while the block runs; its handlers record into the yielded sink."""
    server.daemon_threads = True
    host, port = server.server_address[:2]
    sink = Sink(url=f"{scheme}://{host}:{port}", host=str(host), port=int(port), status=status)
    server.sink = sink  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()


class _SmtpHandler(socketserver.StreamRequestHandler):
    """Just enough ESMTP for smtplib: EHLO (advertising AUTH PLAIN), AUTH, MAIL, RCPT, DATA, QUIT."""

    def _say(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self) -> None:
        sink: Sink = self.server.sink  # type: ignore[attr-defined]
        mail: dict[str, Any] = {"auth": None, "from": None, "to": [], "data": None}
        self._say("220 infersweep-test-sink ESMTP")
        while line := self.rfile.readline():
            cmd = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.wfile.write(b"250-infersweep-test-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
            elif verb == "HELO":
                self._say("250 infersweep-test-sink")
            elif verb == "AUTH":
                mail["auth"] = cmd
                self._say("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                mail["from"] = cmd
                self._say("250 OK")
            elif verb == "RCPT":
                mail["to"].append(cmd)
                self._say("250 OK")
            elif verb == "DATA":
                self._say("354 End data with <CR><LF>.<CR><LF>")
                chunks = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    chunks.append(chunk)
                mail["data"] = b"".join(chunks).decode("utf-8", "replace")
                sink.received.append(dict(mail))
                self._say("250 OK queued")
            elif verb == "QUIT":
                self._say("221 Bye")
                return
            else:
                self._say("250 OK")


@contextmanager
def smtp_sink() -> Iterator[Sink]:
    """An SMTP server on 127.0.0.1 that keeps every message it is sent."""
    with _serving(socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SmtpHandler), "smtp") as sink:
        yield sink


class _HttpHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep the test output (and capfd) to what the code logs
        pass

    def _record(self, method: str) -> None:
        sink: Sink = self.server.sink  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        entry = {"method": method, "path": self.path, "headers": dict(self.headers),
                 "json": json.loads(body) if body else None}
        sink.received.append(entry)
        reply: dict[str, Any] = {"ok": True}
        if self.path == "/auth/token":
            reply = {"access_token": "api-token-from-auth"}
        data = json.dumps(reply).encode()
        self.send_response(sink.status if self.path != "/auth/token" else 201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self._record("POST")

    def do_PATCH(self) -> None:
        self._record("PATCH")


@contextmanager
def http_sink(status: int = 200) -> Iterator[Sink]:
    """An HTTP server on 127.0.0.1 that records every POST/PATCH (path, headers, JSON) and answers `status`
    (`/auth/token` answers an access token, like Airflow's api-server)."""
    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), _HttpHandler), "http", status=status) as sink:
        yield sink


def conn_env(conn_id: str, **fields: Any) -> tuple[str, str]:
    """An Airflow connection as the environment variable Airflow reads it from (JSON form)."""
    return f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields)
