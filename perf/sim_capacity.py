"""Simulator capacity: can `infersweep sim serve` keep 1,024 concurrent streams on time?

Starts the simulator as its own process, drives it with a lean aiohttp/uvloop streaming client in another
process (closed loop, `--concurrency` streams in flight, token-id prompts, ignore_eos, one token per SSE
event), and prints:

- achieved events/s (SSE events the client received per wall second) and tokens/s;
- mean request latency in wall and simulated seconds (they differ by the time scale only when on time);
- scheduler lag: how late engine steps were delivered versus the modelled timeline (mean, max), read from
  the sim's own `/metrics`; a sim that keeps up has lag near the 1 ms event-loop timer resolution;
- CPU seconds used by the sim and by the client, and the CPU cost per event.

Usage:
    .venv/bin/python perf/sim_capacity.py [--concurrency 1024] [--isl 128] [--osl 512] [--time-scale 1]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import psutil


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _metrics(base: str) -> dict[str, float]:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, value = line.rpartition(" ")
        out[re.sub(r"\{.*\}", "", name)] = float(value)
    return out


def _wait_health(base: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"the sim exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the sim did not become healthy")


def python_cost_per_event(
    concurrency: int, isl: int, osl: int, model_profile: str, gpu_profile: str, tp: int
) -> float:
    """CPU µs per token event of the engine loop alone (scheduler step + event encoding), no sockets."""
    from infersweep.engines.sim.config import SimConfig
    from infersweep.engines.sim.core import SimCore
    from infersweep.engines.sim.server import SimServer

    class _Sink:
        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes) -> None:
            pass

    async def run() -> float:
        eng = SimCore(
            SimConfig(
                model_profile=model_profile,
                gpu_profile=gpu_profile,
                tp=tp,
                max_num_seqs=concurrency,
                max_model_len=isl + osl + 256,
            )
        )
        srv = SimServer(eng)
        loop = asyncio.get_running_loop()
        for _ in range(concurrency):
            req = eng.new_request(
                {
                    "prompt": list(range(1000, 1000 + isl)),
                    "max_tokens": osl,
                    "ignore_eos": True,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
                "completion",
                loop,
            )
            req.payload.transport = _Sink()
            eng.prepare_stream(req.payload)
            eng.scheduler.add(req)
        t = time.process_time()
        while eng.scheduler.has_work:
            out = eng.scheduler.step()
            assert out is not None
            srv._deliver(out.emitted, out.emitted_index)
            for r in out.finished:
                srv._finish(r)
        return 1e6 * (time.process_time() - t) / max(eng.scheduler.generation_tokens_total, 1)

    return asyncio.run(run())


def loopback_baseline(n: int, rounds: int = 100, size: int = 230) -> tuple[float, float]:
    """The machine's floor: wall and CPU µs per small write over `n` loopback TCP sockets (reader forked).

    One SSE event is one such write, so no single-process server can stream faster than this here.
    """
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(n)
    port = srv.getsockname()[1]
    msg = b"x" * size
    pid = os.fork()
    if pid == 0:  # reader: drain everything with epoll, then exit
        import select

        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        ep = select.epoll()
        for c in conns:
            c.setblocking(False)
            ep.register(c.fileno(), select.EPOLLIN)
        by_fd = {c.fileno(): c for c in conns}
        total = 0
        while total < n * rounds * size:
            for fd, _ in ep.poll():
                total += len(by_fd[fd].recv(1 << 16))
        os._exit(0)
    socks = [srv.accept()[0] for _ in range(n)]
    for s_ in socks:
        s_.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        for s_ in socks:
            s_.sendall(msg)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    os.waitpid(pid, 0)
    for s_ in socks:
        s_.close()
    srv.close()
    return 1e6 * wall / (n * rounds), 1e6 * cpu / (n * rounds)


async def _client(base: str, concurrency: int, requests: int, isl: int, osl: int) -> dict[str, float]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    events = 0
    completion = 0
    payload_prompt = list(range(1000, 1000 + isl))
    sem = asyncio.Semaphore(concurrency)
    first_event: list[float] = []

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal events, completion
        async with sem:
            body = {
                "prompt": payload_prompt,
                "max_tokens": osl,
                "ignore_eos": True,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            async with session.post(f"{base}/v1/completions", json=body) as resp:
                tail = b""
                n = 0
                async for chunk in resp.content.iter_any():
                    n += chunk.count(b"data: ")
                    tail = (tail + chunk)[-400:]
                    if not first_event:
                        first_event.append(time.perf_counter())
                events += n - 2  # minus the usage chunk and [DONE]
                m = re.search(rb'"completion_tokens":(\d+)', tail)
                completion += int(m.group(1)) if m else 0

    async with aiohttp.ClientSession(
        connector=connector, read_bufsize=1 << 20, timeout=aiohttp.ClientTimeout(total=3600)
    ) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, session) for i in range(requests)))
        t1 = time.perf_counter()
    return {
        "events": events,
        "completion_tokens": completion,
        "wall_s": t1 - t0,
        "first_event_s": (first_event[0] - t0) if first_event else 0.0,
    }


def _client_proc(base: str, concurrency: int, requests: int, isl: int, osl: int, q: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    t = time.process_time()
    res = asyncio.run(_client(base, concurrency, requests, isl, osl))
    res["cpu_s"] = time.process_time() - t
    q.put(res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--concurrency", type=int, default=1024)
    ap.add_argument("--requests", type=int, default=None, help="default: the concurrency (one full wave)")
    ap.add_argument("--isl", type=int, default=128)
    ap.add_argument("--osl", type=int, default=512)
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--model-profile", default="llama-3.1-8b")
    ap.add_argument("--gpu-profile", default="h200")
    ap.add_argument("--tp", type=int, default=1)
    ap.add_argument("--stream-interval", type=int, default=1)
    ap.add_argument("--no-baseline", action="store_true", help="skip the raw loopback-socket baseline")
    args = ap.parse_args()
    requests = args.requests or args.concurrency
    py_us = python_cost_per_event(
        args.concurrency, args.isl, args.osl, args.model_profile, args.gpu_profile, args.tp
    )
    base_wall = base_cpu = None
    if not args.no_baseline:
        base_wall, base_cpu = loopback_baseline(args.concurrency)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "infersweep.cli",
        "sim",
        "serve",
        "--port",
        str(port),
        "--model-profile",
        args.model_profile,
        "--gpu-profile",
        args.gpu_profile,
        "--tp",
        str(args.tp),
        "--time-scale",
        str(args.time_scale),
        "--max-num-seqs",
        str(args.concurrency),
        "--max-model-len",
        str(args.isl + args.osl + 256),
        "--stream-interval",
        str(args.stream_interval),
    ]
    sim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_health(base, sim)
        ps = psutil.Process(sim.pid)
        m0, c0 = _metrics(base), ps.cpu_times()
        q: mp.Queue = mp.get_context("spawn").Queue()  # type: ignore[type-arg]
        client = mp.get_context("spawn").Process(
            target=_client_proc, args=(base, args.concurrency, requests, args.isl, args.osl, q)
        )
        client.start()
        res = q.get(timeout=3600)
        client.join(timeout=60)
        m1, c1 = _metrics(base), ps.cpu_times()
    finally:
        os.killpg(sim.pid, 15)
        sim.wait(timeout=30)
    sim_cpu = (c1.user + c1.system) - (c0.user + c0.system)
    lag_n = m1["sim:scheduler_lag_seconds_count"] - m0["sim:scheduler_lag_seconds_count"]
    lag_mean = (m1["sim:scheduler_lag_seconds_sum"] - m0["sim:scheduler_lag_seconds_sum"]) / max(lag_n, 1)
    steps = m1["sim:steps_total"] - m0["sim:steps_total"]
    busy = m1["sim:modelled_busy_seconds_total"] - m0["sim:modelled_busy_seconds_total"]
    work = m1["sim:engine_work_seconds_total"] - m0["sim:engine_work_seconds_total"]
    gen = m1["vllm:generation_tokens_total"] - m0["vllm:generation_tokens_total"]
    e2e_sim = m1["vllm:e2e_request_latency_seconds_sum"] - m0["vllm:e2e_request_latency_seconds_sum"]
    n_req = m1["vllm:e2e_request_latency_seconds_count"] - m0["vllm:e2e_request_latency_seconds_count"]
    wall = res["wall_s"]
    print(
        f"sim: {args.model_profile} on {args.gpu_profile} TP{args.tp}, time scale {args.time_scale}, "
        f"stream interval {args.stream_interval}; {requests} requests, concurrency {args.concurrency}, "
        f"ISL {args.isl}, OSL {args.osl}"
    )
    print(f"completed tokens (client usage)   {int(res['completion_tokens'])} of {requests * args.osl}")
    print(
        f"achieved events/s (client)        {res['events'] / wall:,.0f}  ({int(res['events'])} events "
        f"in {wall:.2f} s wall)"
    )
    print(f"achieved tokens/s (wall)          {gen / wall:,.0f}")
    print(
        f"mean request latency              {e2e_sim / max(n_req, 1) / args.time_scale:.2f} s wall "
        f"({e2e_sim / max(n_req, 1):.2f} s simulated)"
    )
    print(
        f"engine steps                      {int(steps)} ({steps / wall:,.0f} steps/s); modelled step "
        f"{1000 * busy / max(steps, 1) / args.time_scale:.1f} ms, wall per step {1000 * wall / max(steps, 1):.1f} ms"
    )
    print(f"engine loop CPU, no sockets       {py_us:.1f} us per token event (scheduler step + SSE encoding)")
    if base_wall is not None:
        print(
            f"loopback baseline                 {base_wall:.1f} us wall, {base_cpu:.1f} us CPU per write "
            f"({args.concurrency} sockets, forked reader): at most {1e6 / base_wall:,.0f} events/s here"
        )
    print(
        f"steps merged while late           {int(m1['sim:merged_steps_total'] - m0['sim:merged_steps_total'])}"
    )
    print(
        f"engine loop work                  {1000 * work / max(steps, 1):.1f} ms wall per step "
        f"(pricing the next step + writing this one's events)"
    )
    print(
        f"scheduler lag                     mean {lag_mean * 1000:.2f} ms, "
        f"max {m1['sim:scheduler_lag_seconds_max'] * 1000:.2f} ms over {int(lag_n)} steps"
    )
    print(
        f"sim CPU                           {sim_cpu:.2f} s ({100 * sim_cpu / wall:.0f} % of one core), "
        f"{1e6 * sim_cpu / max(res['events'], 1):.1f} us per event"
    )
    print(
        f"client CPU                        {res['cpu_s']:.2f} s ({100 * res['cpu_s'] / wall:.0f} % of one core), "
        f"{1e6 * res['cpu_s'] / max(res['events'], 1):.1f} us per event"
    )


if __name__ == "__main__":
    main()
