"""`infersweep sim router`: the front door of a disaggregated simulated server.

The client talks to the router with the OpenAI API it would send an aggregated server. The router is
router-orchestrated, as vLLM's P/D proxy (`toy_proxy_server.py`, NixlConnector) is:

1. it sends the request to a prefill worker (`--role prefill`) with `max_tokens` 1, `stream` false and
   `kv_transfer_params: {do_remote_decode: true}`; the worker computes the prompt, models the KV transfer
   (`kv_transfer.py`) and answers once the KV has reached the decode side, with a handle in the reply's
   `kv_transfer_params` (prompt tokens, transfer time, bytes);
2. it sends the original request plus that handle to a decode worker (`--role decode`), which emits the
   prefill's first token at once and decodes the rest, and pipes that response to the client byte for byte,
   so output lengths, usage, finish reasons and answer-key text are the decode worker's, made exactly as
   an aggregated sim makes them.

Every forwarded call has a timeout; a worker that is gone fails the request with 502 at once (connection
refused or reset) and turns the router's /health red, which is green only when every worker answers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
from collections.abc import Sequence
from typing import Any, Literal

import aiohttp
import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from infersweep import __version__

Policy = Literal["round_robin", "least_loaded"]
#: Fields that only concern the client's side of the stream: the prefill call does not get them.
_DECODE_ONLY = ("stream", "stream_options", "max_tokens", "max_completion_tokens", "min_tokens")


class RouterConfig(BaseModel):
    """Validated settings of one simulated router."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    prefill: tuple[str, ...] = Field(min_length=1, description="prefill worker base URLs")
    decode: tuple[str, ...] = Field(min_length=1, description="decode worker base URLs")
    policy: Policy = "round_robin"
    request_timeout_s: float = Field(default=1800.0, gt=0, description="one forwarded generation call, whole")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    health_timeout_s: float = Field(default=2.0, gt=0, description="one worker's /health, /version, /v1/models")

    @field_validator("prefill", "decode")
    @classmethod
    def _urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"worker URL {url!r} must start with http:// (e.g. http://127.0.0.1:8001)")
        return tuple(u.rstrip("/") for u in urls)


class SimRouter:
    """The aiohttp application: picks workers, forwards, and keeps per-worker counters."""

    def __init__(self, cfg: RouterConfig) -> None:
        self.cfg = cfg
        self.pools: dict[str, tuple[str, ...]] = {"prefill": cfg.prefill, "decode": cfg.decode}
        self._rr = {role: itertools.cycle(range(len(urls))) for role, urls in self.pools.items()}
        self.in_flight = {url: 0 for urls in self.pools.values() for url in urls}
        self.requests = dict.fromkeys(self.in_flight, 0)
        self.errors = dict.fromkeys(self.in_flight, 0)
        self.session: aiohttp.ClientSession | None = None
        self._headers = {"x-infersweep-engine": "sim", "x-infersweep-sim-role": "router"}

    # --- lifecycle ----------------------------------------------------------------------------------
    async def _on_startup(self, app: web.Application) -> None:
        # No connection limit: a benchmark holds thousands of streams through the router.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             auto_decompress=False)

    async def _on_cleanup(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def build_app(self) -> web.Application:
        """The router's routes (the OpenAI subset the sim serves, plus health, version and metrics)."""
        app = web.Application(client_max_size=64 * 1024**2)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        r = app.router
        r.add_get("/health", self.health)
        r.add_get("/health_generate", self.health)
        r.add_get("/version", self.version)
        r.add_get("/v1/models", self.models)
        r.add_get("/metrics", self.metrics)
        r.add_post("/v1/completions", self.completions)
        r.add_post("/v1/chat/completions", self.chat)
        r.add_post("/tokenize", self.forward_post)
        r.add_post("/detokenize", self.forward_post)
        return app

    # --- worker choice ------------------------------------------------------------------------------
    def pick(self, role: str) -> str:
        """A worker of `role` by the policy (least_loaded: fewest requests in flight, ties by order)."""
        urls = self.pools[role]
        if self.cfg.policy == "least_loaded":
            return min(urls, key=lambda u: self.in_flight[u])
        return urls[next(self._rr[role])]

    def _timeout(self, total: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=total, sock_connect=self.cfg.connect_timeout_s)

    # --- generation ---------------------------------------------------------------------------------
    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "/v1/completions")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "/v1/chat/completions")

    async def _generate(self, request: web.Request, path: str) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(f"invalid JSON body: {exc}")
        if not isinstance(body, dict):
            return _error("the request body must be a JSON object")
        assert self.session is not None
        prefill, decode = self.pick("prefill"), self.pick("decode")
        pre_body = {k: v for k, v in body.items() if k not in _DECODE_ONLY}
        pre_body.update(max_tokens=1, stream=False,
                        kv_transfer_params={"do_remote_decode": True, "do_remote_prefill": False})
        timeout = self._timeout(self.cfg.request_timeout_s)
        worker = prefill
        for url in (prefill, decode):
            self.in_flight[url] += 1
            self.requests[url] += 1
        try:
            async with self.session.post(prefill + path, data=orjson.dumps(pre_body), timeout=timeout,
                                         headers={"Content-Type": "application/json"}) as r:
                data = await r.read()
                if r.status != 200:  # the worker's own error (bad request, context length): pass it on
                    self.errors[prefill] += r.status >= 500
                    return web.Response(status=r.status, body=data, content_type="application/json")
            kv = _kv_handle(data)
            if kv is None:
                self.errors[prefill] += 1
                return _error(f"prefill worker {prefill} sent no kv_transfer_params (is it --role prefill?)",
                              status=502, type_="BadGatewayError")
            worker = decode
            # The modelled transfer (queueing included), for clients and tests that check where TTFT went.
            headers = {**self._headers, "x-infersweep-kv-transfer-s": repr(float(kv.get("kv_transfer_s", 0.0)))}
            async with self.session.post(decode + path, data=orjson.dumps({**body, "kv_transfer_params": kv}),
                                         timeout=timeout, headers={"Content-Type": "application/json"}) as r:
                if "x-infersweep-sim-time-scale" in r.headers:  # clients convert wall to simulated time with it
                    headers["x-infersweep-sim-time-scale"] = r.headers["x-infersweep-sim-time-scale"]
                if r.status != 200 or not body.get("stream"):
                    self.errors[decode] += r.status >= 500
                    return web.Response(status=r.status, body=await r.read(), content_type="application/json",
                                        headers=headers)
                return await self._pipe(request, r, decode, headers)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.errors[worker] += 1
            role = "prefill" if worker == prefill else "decode"
            return _error(f"{role} worker {worker} failed: {type(exc).__name__}: {exc}", status=502,
                          type_="BadGatewayError")
        finally:
            for url in (prefill, decode):
                self.in_flight[url] -= 1

    async def _pipe(self, request: web.Request, upstream: aiohttp.ClientResponse, url: str,
                    headers: dict[str, str]) -> web.StreamResponse:
        """Copy the decode worker's SSE stream to the client; a worker dying mid-stream ends it with an error."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           **headers})
        await resp.prepare(request)
        try:
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
        except (TimeoutError, aiohttp.ClientError) as exc:
            self.errors[url] += 1
            err = {"error": {"message": f"decode worker {url} failed mid-stream: {type(exc).__name__}: {exc}",
                             "type": "BadGatewayError", "param": None, "code": 502}}
            await resp.write(b"data: " + orjson.dumps(err) + b"\n\ndata: [DONE]\n\n")
        await resp.write_eof()
        return resp

    # --- info ---------------------------------------------------------------------------------------
    async def _get(self, url: str) -> tuple[int, bytes]:
        assert self.session is not None
        try:
            async with self.session.get(url, timeout=self._timeout(self.cfg.health_timeout_s)) as r:
                return r.status, await r.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            return 0, f"{type(exc).__name__}: {exc}".encode()

    async def health(self, request: web.Request) -> web.Response:
        """200 only when every worker's /health answers 200; else 503 naming the ones that do not."""
        urls = [u for urls in self.pools.values() for u in urls]
        results = await asyncio.gather(*(self._get(u + "/health") for u in urls))
        bad = {u: (status, text.decode(errors="replace")[:200]) for u, (status, text) in zip(urls, results,
                                                                                              strict=True)
               if status != 200}
        if bad:
            return web.Response(status=503, headers=self._headers, body=orjson.dumps(
                {"status": "unhealthy", "workers": {u: {"status": s, "detail": d} for u, (s, d) in bad.items()}}),
                content_type="application/json")
        return web.Response(status=200, headers=self._headers)

    async def models(self, request: web.Request) -> web.Response:
        """The decode workers' model card (they serve the client's output)."""
        status, data = await self._get(self.cfg.decode[0] + "/v1/models")
        if status != 200:
            return _error(f"decode worker {self.cfg.decode[0]} /v1/models: {status or data.decode()}", status=503,
                          type_="ServiceUnavailableError")
        return web.Response(body=data, content_type="application/json", headers=self._headers)

    async def version(self, request: web.Request) -> web.Response:
        """The first decode worker's /version, plus the router's layout and every worker's /version."""
        urls = [u for urls in self.pools.values() for u in urls]
        results = await asyncio.gather(*(self._get(u + "/version") for u in urls))
        workers: dict[str, Any] = {}
        for u, (status, data) in zip(urls, results, strict=True):
            try:
                workers[u] = orjson.loads(data) if status == 200 else {"error": status or data.decode()}
            except orjson.JSONDecodeError:
                workers[u] = {"error": "not JSON"}
        head = workers.get(self.cfg.decode[0], {})
        info = {**(head if "error" not in head else {"version": f"sim-{__version__}", "engine": "sim"}),
                "role": "router",
                "router": {"name": "infersweep-sim-router", "version": __version__, "policy": self.cfg.policy,
                           "prefill": list(self.cfg.prefill), "decode": list(self.cfg.decode)},
                "workers": workers}
        return web.Response(body=orjson.dumps(info), content_type="application/json", headers=self._headers)

    async def metrics(self, request: web.Request) -> web.Response:
        """The router's own counters per worker (the workers' engine series are on their own /metrics)."""
        lines = ["# HELP sim:router_requests_total Requests forwarded to a worker.",
                 "# TYPE sim:router_requests_total counter"]
        lab = {u: f'role="{role}",worker="{u}"' for role, urls in self.pools.items() for u in urls}
        lines += [f"sim:router_requests_total{{{lab[u]}}} {n}" for u, n in self.requests.items()]
        lines += ["# HELP sim:router_errors_total Forwarded requests that failed at a worker (5xx to the client).",
                  "# TYPE sim:router_errors_total counter"]
        lines += [f"sim:router_errors_total{{{lab[u]}}} {n}" for u, n in self.errors.items()]
        lines += ["# HELP sim:router_in_flight Requests in flight at a worker.", "# TYPE sim:router_in_flight gauge"]
        lines += [f"sim:router_in_flight{{{lab[u]}}} {n}" for u, n in self.in_flight.items()]
        return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", headers=self._headers)

    async def forward_post(self, request: web.Request) -> web.Response:
        """/tokenize and /detokenize: the first decode worker's answer."""
        assert self.session is not None
        url = self.cfg.decode[0] + request.path
        try:
            async with self.session.post(url, data=await request.read(), timeout=self._timeout(
                    self.cfg.health_timeout_s), headers={"Content-Type": "application/json"}) as r:
                return web.Response(status=r.status, body=await r.read(), content_type="application/json")
        except (TimeoutError, aiohttp.ClientError) as exc:
            return _error(f"decode worker {url} failed: {type(exc).__name__}: {exc}", status=502,
                          type_="BadGatewayError")


def _kv_handle(data: bytes) -> dict[str, Any] | None:
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    kv = reply.get("kv_transfer_params") if isinstance(reply, dict) else None
    return kv if isinstance(kv, dict) else None


def _error(message: str, *, status: int = 400, type_: str = "BadRequestError") -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": status}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def build_router_parser() -> argparse.ArgumentParser:
    """The `infersweep sim router` argument parser."""
    p = argparse.ArgumentParser(prog="infersweep sim router", allow_abbrev=False,
                                description="Route OpenAI requests over simulated prefill and decode workers.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--prefill", action="append", required=True, metavar="URL",
                   help="a prefill worker's base URL (repeat for several)")
    p.add_argument("--decode", action="append", required=True, metavar="URL",
                   help="a decode worker's base URL (repeat for several)")
    p.add_argument("--policy", choices=["round_robin", "least_loaded"], default="round_robin")
    p.add_argument("--request-timeout", type=float, default=1800.0,
                   help="seconds one forwarded generation call may take, stream included")
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--health-timeout", type=float, default=2.0, help="seconds for a worker's /health")
    return p


def parse_router_argv(argv: Sequence[str]) -> RouterConfig:
    """Parse `sim router` arguments (argparse exits with status 2 on errors)."""
    parser = build_router_parser()
    ns = parser.parse_args(list(argv))
    try:
        return RouterConfig(host=ns.host, port=ns.port, prefill=tuple(ns.prefill), decode=tuple(ns.decode),
                            policy=ns.policy, request_timeout_s=ns.request_timeout,
                            connect_timeout_s=ns.connect_timeout, health_timeout_s=ns.health_timeout)
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def serve_router(cfg: RouterConfig) -> int:
    """Run the router until SIGTERM/SIGINT. Returns the process exit status."""
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # uvloop is optional
        loop = asyncio.new_event_loop()
    print(f"infersweep sim router: http://{cfg.host}:{cfg.port} prefill={list(cfg.prefill)} "
          f"decode={list(cfg.decode)} policy={cfg.policy}", file=sys.stderr, flush=True)
    web.run_app(SimRouter(cfg).build_app(), host=cfg.host, port=cfg.port, print=None, access_log=None,
                handler_cancellation=True, shutdown_timeout=1.0, loop=loop)
    return 0


def serve_idle(name: str, host: str, port: int) -> int:
    """`sim idle`: a topology component the simulator needs nothing from (a non-head rank, etcd, NATS) as a
    process that only answers /health, so the group's liveness checks see every component it started."""
    async def health(request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"component": name, "simulated": True, "idle": True}),
                            content_type="application/json")

    app = web.Application()
    app.router.add_get("/health", health)
    print(f"infersweep sim idle: {name} on http://{host}:{port}", file=sys.stderr, flush=True)
    web.run_app(app, host=host, port=port, print=None, access_log=None, shutdown_timeout=1.0)
    return 0
