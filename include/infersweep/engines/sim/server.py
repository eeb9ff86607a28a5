"""The simulator's HTTP server (aiohttp): OpenAI-compatible endpoints over the discrete-step scheduler.

One asyncio task (`_engine_loop`) runs the scheduler against the wall clock: it prices a step, sleeps until
the step's modelled end (divided by the time scale), then delivers the step's tokens. Streamed tokens are
written straight to each connection's transport as pre-framed SSE chunks built from pre-encoded byte
templates, without waking the request handler per token; that keeps the per-event cost to a few
microseconds so 1,024 concurrent streams fit on two cores.

Disaggregated serving (`--role`, driven by `router.py`): a prefill worker runs each request to its first
token and holds its reply until the modelled KV transfer has arrived (`_send_kv`); a decode worker admits
requests whose KV a prefill worker sent (`scheduler.kv_received`) and streams them as an aggregated server
would. Without `--role` nothing of this runs and the server is exactly the aggregated one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import orjson
from aiohttp import web

from infersweep import __version__
from infersweep.engines.sim.config import SimConfig
from infersweep.engines.sim.core import (
    CHAT_TAIL,
    COMPLETION_TAIL,
    RequestError,
    SimCore,
    StartupError,
    Stream,
)
from infersweep.engines.sim.metrics import Histogram, PowerModel
from infersweep.engines.sim.scheduler import SimRequest, Status, StepOutput
from infersweep.engines.sim.tokenizer import TokenizerError, content_text

#: Lateness past which due steps are merged into one delivery (above the event loop's 1 ms timer jitter).
MERGE_AFTER_LAG_S = 0.005
#: Lag beyond which the simulated clock is re-anchored to the wall clock rather than caught up.
MAX_LAG_S = 0.5
#: Re-anchoring threshold with --no-merge-late-steps: every step gets its own events, never compressed.
STRICT_MAX_LAG_S = 0.002
#: Most steps merged into one delivery when catching up.
MAX_MERGED_STEPS = 64


class SimServer:
    """The aiohttp application and the wall-clock engine loop."""

    def __init__(self, engine: SimCore, *, exit_on_engine_failure: bool = False) -> None:
        self.engine = engine
        self.exit_on_engine_failure = exit_on_engine_failure
        self.engine_error: str | None = None
        self.cfg = engine.cfg
        self.scale = engine.cfg.time_scale
        self._wake = asyncio.Event()
        self._t0 = 0.0
        self.lag_sum = 0.0
        self.lag_max = 0.0
        self.lag_count = 0
        self.events_total = 0
        self.modelled_busy_s = 0.0  # Σ modelled step times (simulated seconds)
        self.merged_steps = 0  # steps whose tokens were merged into an earlier step's events (lag)
        self.work_s = 0.0  # wall seconds the engine loop spent pricing steps and writing streams
        self.requests_finished: dict[str, int] = {}
        self.requests_received = 0
        self.kv_received = 0  # decode worker: requests admitted with a prefill worker's KV
        self.ttft = Histogram()
        self.e2e = Histogram()
        self.power = PowerModel(engine.gpu.tdp_w, self.scale)
        self._task: asyncio.Task[None] | None = None
        self._ready_task: asyncio.Task[None] | None = None
        self._headers = {"x-infersweep-engine": "sim", "x-infersweep-sim-time-scale": repr(self.scale)}
        self.flavor = engine.cfg.flavor
        #: SGLang listens while it starts: /health answers 503 until then. The others listen once ready.
        self.ready = self.flavor != "sglang"

    # --- clock -----------------------------------------------------------------------------------
    def sim_now(self) -> float:
        return (time.perf_counter() - self._t0) * self.scale

    async def _on_startup(self, app: web.Application) -> None:
        self._t0 = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._engine_loop())
        self._task.add_done_callback(self._engine_done)
        if not self.ready:
            self._ready_task = asyncio.get_running_loop().create_task(self._become_ready())

    async def _become_ready(self) -> None:
        """SGLang's start-up (model load, warm-up) while the port is already open: --startup-delay seconds."""
        if self.cfg.startup_delay:
            await asyncio.sleep(self.cfg.startup_delay)
        self.ready = True
        print("infersweep sim: ready (sglang flavor: /health now answers 200)", file=sys.stderr, flush=True)

    def _engine_done(self, task: asyncio.Task[None]) -> None:
        """A dead engine loop is a dead engine: fail every request, turn /health red (or exit, as vLLM)."""
        if task.cancelled() or task.exception() is None:
            return
        import traceback

        exc = task.exception()
        self.engine_error = "".join(traceback.format_exception(exc))
        print(f"infersweep sim: engine loop died\n{self.engine_error}", file=sys.stderr, flush=True)
        if self.exit_on_engine_failure:
            os._exit(1)
        sched = self.engine.scheduler
        for req in [*sched.running, *sched.waiting]:
            st: Stream = req.payload
            if not st.done.done():
                st.done.set_exception(RuntimeError("the simulated engine died"))

    async def _on_cleanup(self, app: web.Application) -> None:
        for task in (self._task, self._ready_task):
            if task is not None:
                task.cancel()

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        r = app.router
        r.add_get("/health", self.health)
        if self.flavor == "sglang":
            r.add_get("/health_generate", self.health)
        r.add_get("/version", self.version)
        r.add_get("/v1/models", self.models)
        r.add_get("/metrics", self.metrics)
        if self.flavor == "trt":
            r.add_get("/prometheus/metrics", self.prometheus_metrics)
        r.add_post("/tokenize", self.tokenize)
        r.add_post("/detokenize", self.detokenize)
        r.add_post("/v1/completions", self.completions)
        r.add_post("/v1/chat/completions", self.chat)
        return app

    # --- engine loop -------------------------------------------------------------------------------
    async def _engine_loop(self) -> None:
        """Step the scheduler on the wall clock.

        A step's outputs are delivered at its modelled end; the next step is priced first, so the CPU spent
        writing streams overlaps the next step's modelled time. When the process falls behind (a loaded
        machine, thousands of streams), every step already due is run at once and its tokens are merged into
        one event per stream, as vLLM's output collector merges deltas when the API server lags: the
        modelled token timeline (TTFT, TPOT, throughput) is kept, only event granularity coarsens. Beyond
        `MAX_LAG_S` the simulated clock is re-anchored to the wall clock instead. With
        `--no-merge-late-steps` every step keeps its own events and the clock is re-anchored past 2 ms.
        """
        sched = self.engine.scheduler
        perf = time.perf_counter
        scale = self.scale
        merge = self.cfg.merge_late_steps
        max_lag = MAX_LAG_S if merge else STRICT_MAX_LAG_S
        out = None
        while True:
            if out is None:
                if not sched.has_work:
                    self._wake.clear()
                    await self._wake.wait()
                    sched.advance_to(self.sim_now())
                    continue
                out = sched.step()
                if out is None:
                    continue
            target = self._t0 + out.end / scale
            delay = target - perf()
            if delay > 0:
                await asyncio.sleep(delay)
            now = perf()
            lag = now - target
            self.lag_count += 1
            if lag > 0:
                self.lag_sum += lag
                if lag > self.lag_max:
                    self.lag_max = lag
                if lag > max_lag:
                    sched.advance_to(self.sim_now())  # hopelessly behind: do not replay the backlog
            due = [out]
            self.power.record(now, out.cost.total_s, out.cost.compute_fraction)
            self.modelled_busy_s += out.cost.total_s
            out = sched.step()  # starts at the previous step's end, while its tokens are written
            while (merge and out is not None and self._t0 + out.end / scale <= now - MERGE_AFTER_LAG_S
                   and len(due) < MAX_MERGED_STEPS):
                due.append(out)  # already due: behind schedule, merge its tokens into the same events
                self.power.record(now, out.cost.total_s, out.cost.compute_fraction)
                self.modelled_busy_s += out.cost.total_s
                out = sched.step()
            self.merged_steps += len(due) - 1
            if len(due) == 1:
                self._deliver(due[0].emitted, due[0].emitted_index)
            else:
                self._deliver_merged(due)
            for step in due:
                for req in step.finished:
                    self._finish(req)
            self.work_s += perf() - now
            if self.cfg.die_after_requests and sum(self.requests_finished.values()) >= self.cfg.die_after_requests:
                _mark_fault_fired(self.cfg)
                print(f"infersweep sim: --die-after-requests {self.cfg.die_after_requests} reached; "
                      "exiting abruptly (simulated crash)", file=sys.stderr, flush=True)
                os._exit(1)

    def _deliver(self, emitted: list[SimRequest], index: list[int]) -> None:
        """Write one step's tokens (the common case: one event per stream)."""
        filler_json = self.engine._filler_json
        n_filler = len(filler_json)
        interval = self.cfg.stream_interval
        events = 0
        for req, i in zip(emitted, index, strict=True):
            st: Stream = req.payload
            if not st.stream:
                st.text_parts.append(self.engine.token_text(st, i))
                continue
            if st.failed:
                continue
            tr = st.transport
            # Fast path, the common event: one synthetic token, not the last, no per-chunk usage.
            if (interval == 1 and not st.continuous_usage and i >= len(st.pieces) and i != req.num_output - 1
                    and (st.chat_started or st.kind == "completion") and not tr.is_closing()):
                data = st.text_head + filler_json[(st.filler_offset + i) % n_filler] + (
                    COMPLETION_TAIL if st.kind == "completion" else CHAT_TAIL)
                tr.write(b"%x\r\n%b\r\n" % (len(data), data) if st.chunked else data)
                events += 1
                continue
            st.pending.append(i)
            if len(st.pending) < interval and i != 0 and i != req.num_output - 1:
                continue  # inside a --stream-interval group (the request has not finished with this token)
            self._flush(req)
        self.events_total += events

    def _deliver_merged(self, steps: list[StepOutput]) -> None:
        """Write several steps' tokens with one event per stream (the sim is behind schedule)."""
        touched: dict[int, SimRequest] = {}
        interval = self.cfg.stream_interval
        for step in steps:
            for req, i in zip(step.emitted, step.emitted_index, strict=True):
                st: Stream = req.payload
                if not st.stream:
                    st.text_parts.append(self.engine.token_text(st, i))
                elif not st.failed:
                    st.pending.append(i)
                    touched[req.rid] = req
                    # With --stream-interval N the server's event boundaries are token counts (1, 1+N, …), not
                    # steps: a late step still closes a group at its boundary, so the event count stays exact.
                    if interval > 1 and (len(st.pending) >= interval or i == 0):
                        self._flush(req)
        for req in touched.values():
            if req.payload.pending:
                self._flush(req)

    def _flush(self, req: SimRequest) -> None:
        """Write a stream's pending tokens as one event, honouring --stream-interval."""
        st: Stream = req.payload
        eng = self.engine
        last = st.pending[-1]
        # The request may already be a step further: it is finished with *this* token only if it is the last.
        finished = req.status is Status.FINISHED and last == req.num_output - 1
        if len(st.pending) < self.cfg.stream_interval and not finished and st.pending[0] != 0:
            return  # vLLM's stream interval: the first token goes at once, then every N
        data = eng.chunk(st, st.pending, req.finish_reason if finished else None, last + 1)
        st.pending = []
        if st.kind == "chat" and not st.chat_started:
            # vLLM sends the role-only delta with the first engine output, not at request arrival.
            st.chat_started = True
            data = eng.role_chunk(st) + data
        if finished:
            data += eng.final_chunks(st, last + 1)
        self._write(req, data)

    def _write(self, req: SimRequest, data: bytes) -> None:
        st: Stream = req.payload
        tr = st.transport
        if tr is None or tr.is_closing():
            st.failed = True
            if req.status is not Status.FINISHED:
                self.engine.scheduler.abort(req)
                self._finish(req)
            return
        self.events_total += 1
        tr.write(b"%x\r\n%b\r\n" % (len(data), data) if st.chunked else data)

    def _finish(self, req: SimRequest) -> None:
        st: Stream = req.payload
        if st.finished:
            return  # already finished (an abort racing the step that completed it)
        st.finished = True
        reason = req.finish_reason or "abort"
        self.requests_finished[reason] = self.requests_finished.get(reason, 0) + 1
        if req.first_token_time is not None and reason != "abort":
            self.ttft.observe(req.first_token_time - req.arrival)
            self.e2e.observe((req.finish_time or req.first_token_time) - req.arrival)
        if st.done.done():
            return
        if self.engine.kv_link is not None and reason != "abort" and st.kv_params is not None:
            self._send_kv(req)
        else:
            st.done.set_result(None)

    # --- disaggregated serving (see router.py) ------------------------------------------------------
    def _send_kv(self, req: SimRequest) -> None:
        """Prefill worker: the prompt is done; answer the router once its KV has reached the decode worker.

        The transfer is modelled (`kv_transfer.KvLink`: queueing on this worker's link, wire time, latency);
        the reply is held until the modelled arrival on the wall clock, so the router's next call (to the
        decode worker) happens when the KV is there."""
        st: Stream = req.payload
        link = self.engine.kv_link
        assert link is not None and req.finish_time is not None
        arrival = link.send(req.finish_time, req.prompt_len)
        st.kv_params = {
            "do_remote_prefill": True, "do_remote_decode": False, "remote_request_id": st.rid,
            "remote_engine_id": f"sim-prefill-{self.cfg.port}", "prompt_tokens": req.prompt_len,
            "kv_bytes_per_rank": link.model.bytes_per_rank(req.prompt_len), "kv_transfer_engine": link.model.engine,
            "kv_link": link.model.link, "prefill_done_s": req.finish_time, "kv_transfer_s": arrival - req.finish_time,
        }
        delay = self._t0 + arrival / self.scale - time.perf_counter()

        def arrived() -> None:
            if not st.done.done():
                st.done.set_result(None)

        asyncio.get_running_loop().call_later(max(0.0, delay), arrived)

    # --- generation endpoints ----------------------------------------------------------------------
    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "completion")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat")

    async def _generate(self, request: web.Request, kind: str) -> web.StreamResponse:
        if self.engine_error is not None:
            return _error("the simulated engine died", status=500, type_="InternalServerError")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return _error(f"invalid JSON body: {exc}")
        if not isinstance(body, dict):
            return _error("the request body must be a JSON object")
        model = body.get("model")
        if model is not None and model != self.engine.served_name:
            return _error(f"The model `{model}` does not exist.", status=404, type_="NotFoundError")
        try:
            req = self.engine.new_request(body, kind, asyncio.get_running_loop())
        except RequestError as exc:
            return _error(str(exc))
        self.requests_received += 1
        st: Stream = req.payload
        resp: web.StreamResponse
        if st.stream:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               **self._headers})
            st.chunked = request.version >= (1, 1)
            if st.chunked:
                resp.enable_chunked_encoding()
            else:
                resp.force_close()
            await resp.prepare(request)
            # aiohttp buffers headers until the first body write; the engine writes the transport directly.
            request.writer.send_headers()  # type: ignore[attr-defined]
            st.transport = request.transport
            self.engine.prepare_stream(st)
        req.arrival = self.sim_now()
        sched = self.engine.scheduler
        if self.cfg.role == "decode":
            self.kv_received += 1
        if not sched.has_work:
            sched.advance_to(req.arrival)
        sched.add(req)
        self._wake.set()
        try:
            await st.done
        except RuntimeError as exc:  # the engine loop died (see _engine_done)
            if not st.stream:
                return _error(str(exc), status=500, type_="InternalServerError")
            # Headers are out: report in-band, as vLLM does for errors mid-stream.
            err = {"error": {"message": str(exc), "type": "InternalServerError", "param": None, "code": 500}}
            await resp.write_eof(b"data: " + orjson.dumps(err) + b"\n\ndata: [DONE]\n\n")
            return resp
        except asyncio.CancelledError:  # the client went away: free the sequence's KV blocks
            if req.status is not Status.FINISHED:
                sched.abort(req)
                self._finish(req)
            raise
        if st.stream:
            await resp.write_eof()
            return resp
        return web.Response(body=orjson.dumps(self.engine.full_response(req)),
                            content_type="application/json", headers=self._headers)

    # --- info endpoints ----------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        if self.flavor == "sglang":
            # SGLang: /health and /health_generate share one handler; 503 while starting or unhealthy.
            ok = self.ready and self.engine_error is None
            return web.Response(status=200 if ok else 503, headers=self._headers)
        if self.engine_error is not None:
            return web.Response(status=500, text="engine dead", headers=self._headers)
        return web.Response(status=200, headers=self._headers)

    async def version(self, request: web.Request) -> web.Response:
        return _json(self.engine.version_info(), self._headers)

    async def models(self, request: web.Request) -> web.Response:
        eng = self.engine
        card = {
            "id": eng.served_name, "object": "model", "created": eng.created, "owned_by": _OWNED_BY[self.flavor],
            "root": eng.profile.hf_id, "parent": None, "max_model_len": eng.max_model_len,
            "engine": "sim", "sim": eng.version_info(),
            "permission": [{"id": f"modelperm-{eng.created}", "object": "model_permission",
                            "created": eng.created, "allow_create_engine": False, "allow_sampling": True,
                            "allow_logprobs": True, "allow_search_indices": False, "allow_view": True,
                            "allow_fine_tuning": False, "organization": "*", "group": None,
                            "is_blocking": False}],
        }
        return _json({"object": "list", "data": [card]}, self._headers)

    async def tokenize(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            tok = self.engine.tokenizer
            if "messages" in body:
                msgs = [{**m, "content": content_text(m.get("content"))} for m in body["messages"]]
                ids = tok.encode_chat(msgs, add_generation_prompt=bool(body.get("add_generation_prompt", True)))
            elif isinstance(body.get("prompt"), str):
                ids = tok.encode(body["prompt"], add_special_tokens=bool(body.get("add_special_tokens", True)))
            else:
                return _error("tokenize needs a string `prompt` or `messages`")
        except (orjson.JSONDecodeError, TypeError, AttributeError, KeyError, TokenizerError) as exc:
            return _error(f"invalid tokenize request: {exc!r}")
        return _json({"count": len(ids), "max_model_len": self.engine.max_model_len, "tokens": ids,
                      "token_strs": None}, self._headers)

    async def detokenize(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            ids = body["tokens"]
            if not isinstance(ids, list) or not all(type(t) is int for t in ids):
                raise TypeError("tokens must be a list of ints")
        except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
            return _error(f"invalid detokenize request: {exc}")
        return _json({"prompt": self.engine.tokenizer.decode(ids)}, self._headers)

    async def metrics(self, request: web.Request) -> web.Response:
        if self.flavor == "trt":
            # trtllm-serve's /metrics is JSON iteration stats (empty unless enable_iter_perf_stats is set);
            # its Prometheus text is /prometheus/metrics.
            return _json([], self._headers)
        return web.Response(text=self.render_metrics(), content_type="text/plain", headers=self._headers)

    async def prometheus_metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.render_metrics(), content_type="text/plain", headers=self._headers)

    def render_metrics(self) -> str:
        """The Prometheus text exposition (see metrics.py for names and units): the flavor's engine series,
        then the simulator's own `sim:` series."""
        if self.flavor == "sglang":
            lines = self._sglang_lines()
        elif self.flavor == "trt":
            lines = self._trtllm_lines()
        else:  # vllm and atom (ATOM's server exposes vLLM's names)
            lines = self._vllm_lines()
        return "\n".join(lines + self._sim_lines()) + "\n"

    def _sglang_lines(self) -> list[str]:
        eng, sched = self.engine, self.engine.scheduler
        m = f'model_name="{eng.served_name}"'
        used = round(sched.kv_usage * eng.kv_capacity_tokens)
        return [
            "# HELP sglang:num_running_reqs The number of running requests.",
            "# TYPE sglang:num_running_reqs gauge", f"sglang:num_running_reqs{{{m}}} {len(sched.running)}",
            "# HELP sglang:num_queue_reqs The number of requests in the waiting queue.",
            "# TYPE sglang:num_queue_reqs gauge", f"sglang:num_queue_reqs{{{m}}} {len(sched.waiting)}",
            "# HELP sglang:num_used_tokens The number of used tokens.",
            "# TYPE sglang:num_used_tokens gauge", f"sglang:num_used_tokens{{{m}}} {used}",
            "# HELP sglang:token_usage The token usage.",
            "# TYPE sglang:token_usage gauge", f"sglang:token_usage{{{m}}} {sched.kv_usage}",
            "# HELP sglang:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE sglang:prompt_tokens_total counter",
            f"sglang:prompt_tokens_total{{{m}}} {sched.prompt_tokens_total}",
            "# HELP sglang:generation_tokens_total Number of generation tokens processed.",
            "# TYPE sglang:generation_tokens_total counter",
            f"sglang:generation_tokens_total{{{m}}} {sched.generation_tokens_total}",
            "# HELP sglang:num_requests_total Number of requests processed.",
            "# TYPE sglang:num_requests_total counter",
            f"sglang:num_requests_total{{{m}}} {sum(self.requests_finished.values())}",
            "# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.",
            "# TYPE sglang:time_to_first_token_seconds histogram",
            *self.ttft.render("sglang:time_to_first_token_seconds", m),
            "# HELP sglang:e2e_request_latency_seconds Histogram of End-to-end request latency in seconds",
            "# TYPE sglang:e2e_request_latency_seconds histogram",
            *self.e2e.render("sglang:e2e_request_latency_seconds", m),
        ]

    def _trtllm_lines(self) -> list[str]:
        eng, sched = self.engine, self.engine.scheduler
        m = f'model_name="{eng.served_name}",engine_type="trtllm"'
        lines = [
            "# HELP trtllm_num_requests_running Number of active requests",
            "# TYPE trtllm_num_requests_running gauge", f"trtllm_num_requests_running{{{m}}} {len(sched.running)}",
            "# HELP trtllm_num_requests_waiting Number of queued requests",
            "# TYPE trtllm_num_requests_waiting gauge", f"trtllm_num_requests_waiting{{{m}}} {len(sched.waiting)}",
            "# HELP trtllm_kv_cache_utilization KV cache utilization",
            "# TYPE trtllm_kv_cache_utilization gauge", f"trtllm_kv_cache_utilization{{{m}}} {sched.kv_usage}",
            "# HELP trtllm_prompt_tokens_total Cumulative number of prompt (input) tokens processed.",
            "# TYPE trtllm_prompt_tokens_total counter",
            f"trtllm_prompt_tokens_total{{{m}}} {sched.prompt_tokens_total}",
            "# HELP trtllm_generation_tokens_total Cumulative number of generation (output) tokens produced.",
            "# TYPE trtllm_generation_tokens_total counter",
            f"trtllm_generation_tokens_total{{{m}}} {sched.generation_tokens_total}",
            "# HELP trtllm_request_success_total Count of successfully processed requests.",
            "# TYPE trtllm_request_success_total counter",
        ]
        for reason in ("stop", "length", "abort"):
            lines.append(f'trtllm_request_success_total{{{m},finished_reason="{reason}"}} '
                         f"{self.requests_finished.get(reason, 0)}")
        return [
            *lines,
            "# HELP trtllm_time_to_first_token_seconds Histogram of time to first token in seconds.",
            "# TYPE trtllm_time_to_first_token_seconds histogram",
            *self.ttft.render("trtllm_time_to_first_token_seconds", m),
            "# HELP trtllm_e2e_request_latency_seconds Histogram of end to end request latency in seconds.",
            "# TYPE trtllm_e2e_request_latency_seconds histogram",
            *self.e2e.render("trtllm_e2e_request_latency_seconds", m),
        ]

    def _vllm_lines(self) -> list[str]:
        eng, sched = self.engine, self.engine.scheduler
        m = f'model_name="{eng.served_name}"'
        lines = [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{{{m}}} {len(sched.running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge", f"vllm:num_requests_waiting{{{m}}} {len(sched.waiting)}",
            "# HELP vllm:gpu_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:gpu_cache_usage_perc gauge", f"vllm:gpu_cache_usage_perc{{{m}}} {sched.kv_usage}",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge", f"vllm:kv_cache_usage_perc{{{m}}} {sched.kv_usage}",
            "# HELP vllm:num_preemptions_total Cumulative number of preemptions.",
            "# TYPE vllm:num_preemptions_total counter", f"vllm:num_preemptions_total{{{m}}} {sched.num_preemptions}",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter", f"vllm:prompt_tokens_total{{{m}}} {sched.prompt_tokens_total}",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{m}}} {sched.generation_tokens_total}",
            "# HELP vllm:request_success_total Count of finished requests by finish reason.",
            "# TYPE vllm:request_success_total counter",
        ]
        for reason in ("stop", "length", "abort"):
            lines.append(f'vllm:request_success_total{{{m},finished_reason="{reason}"}} '
                         f"{self.requests_finished.get(reason, 0)}")
        lines += ["# HELP vllm:time_to_first_token_seconds Time to first token (simulated seconds).",
                  "# TYPE vllm:time_to_first_token_seconds histogram",
                  *self.ttft.render("vllm:time_to_first_token_seconds", m),
                  "# HELP vllm:e2e_request_latency_seconds End-to-end request latency (simulated seconds).",
                  "# TYPE vllm:e2e_request_latency_seconds histogram",
                  *self.e2e.render("vllm:e2e_request_latency_seconds", m)]
        return lines

    def _sim_lines(self) -> list[str]:
        """The simulator's own series (modelled GPU figures, scheduler lag), the same for every flavor."""
        eng, sched, cfg = self.engine, self.engine.scheduler, self.cfg
        util, power = self.power.sample()
        sim = 'simulated="true"'
        mem_used = eng.gpu.memory_gb * 1e9 * eng.gpu_memory_utilization
        lines = [
            "# HELP sim:engine_info The simulated engine and what it models (value 1).",
            "# TYPE sim:engine_info gauge",
            f'sim:engine_info{{engine="sim",version="sim-{__version__}",model_profile="{eng.profile.name}",'
            f'gpu_profile="{eng.gpu.name}",tp="{cfg.tp}",ep="{cfg.ep}",dp="{cfg.dp}",pp="{cfg.pp}",dcp="{cfg.dcp}",pcp="{cfg.pcp}",'
            f'time_scale="{self.scale}"}} 1',
            "# HELP sim:time_scale Simulated seconds per wall second.", "# TYPE sim:time_scale gauge",
            f"sim:time_scale {self.scale}",
            "# HELP sim:gpu_utilization_perc Modelled GPU busy fraction over the last wall second (0..1).",
            "# TYPE sim:gpu_utilization_perc gauge",
            "# HELP sim:gpu_power_watts Modelled GPU board power (not measured).",
            "# TYPE sim:gpu_power_watts gauge",
            "# HELP sim:gpu_memory_used_bytes Modelled GPU memory in use (weights + KV pool + reserve).",
            "# TYPE sim:gpu_memory_used_bytes gauge",
            "# HELP sim:gpu_temperature_celsius Modelled GPU temperature: 30 C + 50 C x power/TDP.",
            "# TYPE sim:gpu_temperature_celsius gauge",
        ]
        temp = 30.0 + 50.0 * power / eng.gpu.tdp_w
        for g in range(self.engine.topology.gpus):
            lab = f'gpu="{g}",{sim}'
            lines += [f"sim:gpu_utilization_perc{{{lab}}} {util}", f"sim:gpu_power_watts{{{lab}}} {power:.1f}",
                      f"sim:gpu_memory_used_bytes{{{lab}}} {mem_used:.0f}",
                      f"sim:gpu_temperature_celsius{{{lab}}} {temp:.1f}"]
        lines += [
            "# HELP sim:scheduler_lag_seconds Wall-clock lateness of engine steps (the sim falling behind).",
            "# TYPE sim:scheduler_lag_seconds summary",
            f"sim:scheduler_lag_seconds_sum {self.lag_sum}", f"sim:scheduler_lag_seconds_count {self.lag_count}",
            "# TYPE sim:scheduler_lag_seconds_max gauge", f"sim:scheduler_lag_seconds_max {self.lag_max}",
            "# TYPE sim:steps_total counter", f"sim:steps_total {sched.steps_total}",
            "# HELP sim:merged_steps_total Steps whose tokens were merged into earlier events (the sim was late).",
            "# TYPE sim:merged_steps_total counter", f"sim:merged_steps_total {self.merged_steps}",
            "# HELP sim:engine_work_seconds_total Wall seconds the engine loop spent stepping and writing.",
            "# TYPE sim:engine_work_seconds_total counter", f"sim:engine_work_seconds_total {self.work_s}",
            "# HELP sim:modelled_busy_seconds_total Sum of modelled step times (simulated seconds).",
            "# TYPE sim:modelled_busy_seconds_total counter",
            f"sim:modelled_busy_seconds_total {self.modelled_busy_s}",
            "# TYPE sim:stream_events_total counter", f"sim:stream_events_total {self.events_total}",
        ]
        if cfg.role != "aggregated":  # disaggregated workers only: an aggregated server's metrics are unchanged
            lines += [
                "# HELP sim:role_info This worker's role in a disaggregated topology (value 1).",
                "# TYPE sim:role_info gauge", f'sim:role_info{{role="{cfg.role}"}} 1',
                "# HELP sim:kv_received_total Requests admitted with KV sent by a prefill worker.",
                "# TYPE sim:kv_received_total counter", f"sim:kv_received_total {self.kv_received}",
            ]
            link = eng.kv_link
            if link is not None:
                lines += [
                    "# HELP sim:kv_transfers_total KV transfers sent to decode workers.",
                    "# TYPE sim:kv_transfers_total counter", f"sim:kv_transfers_total {link.transfers}",
                    "# HELP sim:kv_transfer_bytes_total KV bytes sent per prefill GPU (modelled).",
                    "# TYPE sim:kv_transfer_bytes_total counter", f"sim:kv_transfer_bytes_total {link.bytes_total:.0f}",
                    "# HELP sim:kv_transfer_seconds_total Σ modelled transfer times, queueing included (simulated s).",
                    "# TYPE sim:kv_transfer_seconds_total counter", f"sim:kv_transfer_seconds_total {link.seconds_total}",
                ]
        return lines


#: `owned_by` of the model card, per flavor.
_OWNED_BY = {"vllm": "vllm", "sglang": "sglang", "trt": "tensorrt_llm", "atom": "atom"}


def _json(obj: Any, headers: dict[str, str]) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type="application/json", headers=headers)


def _error(message: str, *, status: int = 400, type_: str = "BadRequestError") -> web.Response:
    body = {"error": {"message": message, "type": type_, "param": None, "code": status}}
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _mark_fault_fired(cfg: SimConfig) -> None:
    """Create the `--fault-once` marker (before the fault takes the process down)."""
    if cfg.fault_once:
        with open(cfg.fault_once, "a"):
            pass


def _disarm_spent_faults(cfg: SimConfig) -> SimConfig:
    """With `--fault-once`, a fault that already fired (marker present) is not injected again."""
    if cfg.fault_once and os.path.exists(cfg.fault_once) and (cfg.fail_at_start or cfg.die_after_requests):
        print(f"infersweep sim: fault already fired ({cfg.fault_once} exists); running clean",
              file=sys.stderr, flush=True)
        return cfg.model_copy(update={"fail_at_start": None, "die_after_requests": None})
    return cfg


def serve(cfg: SimConfig) -> int:
    """Run the server until SIGTERM/SIGINT. Returns the process exit status."""
    cfg = _disarm_spent_faults(cfg)
    if cfg.startup_delay and cfg.flavor != "sglang":  # SGLang listens while starting (see SimServer.ready)
        print(f"infersweep sim: start-up delay {cfg.startup_delay} s", file=sys.stderr, flush=True)
        time.sleep(cfg.startup_delay)
    try:
        engine = SimCore(cfg)
    except StartupError as exc:
        if cfg.fail_at_start:
            _mark_fault_fired(cfg)
        print(str(exc), file=sys.stderr, flush=True)
        return 1
    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # uvloop is optional: the stdlib loop is slower but correct
        loop = asyncio.new_event_loop()
    info = engine.version_info()
    print(f"infersweep sim: serving {engine.served_name!r} on http://{cfg.host}:{cfg.port} "
          f"({orjson.dumps(info).decode()})", file=sys.stderr, flush=True)
    server = SimServer(engine, exit_on_engine_failure=True)
    web.run_app(server.build_app(), host=cfg.host, port=cfg.port, print=None, access_log=None,
                handler_cancellation=True, shutdown_timeout=1.0, loop=loop)
    return 0
