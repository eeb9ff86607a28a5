"""GSM8K eval overheads: offline scoring of the full test split, and the native client's request rate.

    .venv/bin/python perf/eval_gsm8k.py [--data-dir ../shared/data/gsm8k] [--concurrency 64]

Prints (1) the time to build all 1,319 five-shot requests and to score 1,319 responses, and (2) how
many requests per second the async client sustains against a zero-latency local chat server
running in the same process (both share the CPU, so this is a lower bound on client capacity).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from pathlib import Path

from aiohttp import web

from infersweep.evals.data import load_gsm8k
from infersweep.evals.gsm8k import build_requests, run_gsm8k, score_responses


def _serve(port_box: list[int], ready: threading.Event, stop: threading.Event) -> None:
    async def chat(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"choices": [{"index": 0, "message": {"content": "So 3 + 4 = 7.\n#### 7"}, "finish_reason": "stop"}]})

    async def main() -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_box.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await runner.cleanup()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"))
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = load_gsm8k(args.data_dir)

    build_s, score_s = [], []
    responses = {i: f"Reasoning 12 + 30 = 42.\n#### {d.answer.split('#### ')[-1]}" for i, d in enumerate(data.test)}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        build_requests(data, model="m", limit=None, max_tokens=12288)
        build_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        score_responses(responses, data=data)
        score_s.append(time.perf_counter() - t0)
    print(f"build 1319 five-shot requests: median {statistics.median(build_s) * 1000:.1f} ms over {args.repeats} runs")
    print(f"score 1319 responses (both filters + exact_match + stderr): median {statistics.median(score_s) * 1000:.1f} ms")

    port_box: list[int] = []
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=_serve, args=(port_box, ready, stop), daemon=True)
    thread.start()
    ready.wait(30)
    try:
        t0 = time.perf_counter()
        result = run_gsm8k(f"http://127.0.0.1:{port_box[0]}", "m", data=data, concurrency=args.concurrency)
        wall = time.perf_counter() - t0
    finally:
        stop.set()
        thread.join(30)
    latencies = sorted(s.latency_s or 0.0 for s in result.samples)
    print(
        f"native client, conc {args.concurrency}, n={result.n}: {result.n / wall:.0f} req/s end to end "
        f"({wall:.2f} s), median request latency {statistics.median(latencies) * 1000:.1f} ms "
        f"(server in the same process, zero model time)"
    )


if __name__ == "__main__":
    main()
