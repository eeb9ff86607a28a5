"""Anchor harness: vLLM's own streaming request function, driven the way `vllm bench serve` drives it.

Runs in a throwaway venv (aiohttp, regex, tqdm, numpy) with vLLM's `vllm/benchmarks/lib/endpoint_request_func.py`
loaded straight from an unpacked vLLM wheel (``--vllm-src``), so vLLM's package __init__ (torch) is never
imported. As in vLLM's serve.py: default asyncio loop, one ClientSession with its TCPConnector settings,
every request task created up front behind an ``asyncio.Semaphore(max_concurrency)``, a tqdm bar, gather.
Prints one JSON line: CPU seconds and stream events of the measured phase.

    /tmp/anchors/venv-vllm/bin/python perf/client_anchor_vllm.py --vllm-src /tmp/anchors/vllmsrc \
        --url http://127.0.0.1:PORT --conc 64 --num-prompts 256 --isl 128 --osl 512
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import time
from pathlib import Path


def _load(src: Path):
    path = src / "vllm" / "benchmarks" / "lib" / "endpoint_request_func.py"
    spec = importlib.util.spec_from_file_location("vllm_endpoint_request_func", path)
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


async def _main(a: argparse.Namespace) -> dict:
    import aiohttp
    from tqdm.asyncio import tqdm

    erf = _load(Path(a.vllm_src))
    rng = random.Random(0)
    url = a.url.rstrip("/") + "/v1/completions"

    def inp(i: int, tag: str = "vllm"):
        ids = [rng.randrange(10, 2000) for _ in range(a.isl)]
        return erf.RequestFuncInput(
            prompt=ids, api_url=url, prompt_len=a.isl, output_len=a.osl, model="mock", ignore_eos=True,
            request_id=f"{tag}-{i}",
        )  # fmt: skip

    connector = aiohttp.TCPConnector(
        limit=a.conc, limit_per_host=a.conc, ttl_dns_cache=300, use_dns_cache=True,
        keepalive_timeout=60, enable_cleanup_closed=True, force_close=False, ssl=False,
    )  # fmt: skip
    session = aiohttp.ClientSession(
        connector=connector, trust_env=True, timeout=aiohttp.ClientTimeout(total=6 * 60 * 60)
    )
    fn = erf.async_request_openai_completions
    warm = [inp(i, "warm") for i in range(a.conc if a.warmups is None else a.warmups)]
    sem_w = asyncio.Semaphore(a.conc)

    async def warm_one(x):
        async with sem_w:
            return await fn(x, session)

    await asyncio.gather(*(warm_one(x) for x in warm))
    inputs = [inp(i) for i in range(a.num_prompts)]
    sem = asyncio.Semaphore(a.conc)
    pbar = tqdm(total=a.num_prompts)

    async def limited(x):
        async with sem:
            return await fn(x, session, pbar)

    cpu0, t0 = time.process_time(), time.perf_counter()
    tasks = [asyncio.create_task(limited(x)) for x in inputs]
    outs = await asyncio.gather(*tasks)
    dur = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    pbar.close()
    await session.close()
    events = sum(len(o.itl) + 1 for o in outs if o.success)
    ttfts = sorted(o.ttft for o in outs if o.success)
    return {
        **_vllm_metrics(outs, dur),
        "client": "vllm-request-func",
        "conc": a.conc,
        "duration_s": dur,
        "cpu_s": cpu,
        "events": events,
        "failed": sum(not o.success for o in outs),
        "tokens": sum(o.output_tokens or 0 for o in outs if o.success),
        "median_ttft_ms": 1000 * ttfts[len(ttfts) // 2] if ttfts else None,
    }


def _vllm_metrics(outs, dur: float) -> dict:
    """vLLM's calculate_metrics formulas (serve.py) applied to its request outputs, for agreement checks."""
    import numpy as np

    done = [o for o in outs if o.success]
    ttfts = [o.ttft for o in done]
    e2els = [o.latency for o in done]
    tpots = [(o.latency - o.ttft) / (o.output_tokens - 1) for o in done if o.output_tokens > 1]
    itls = [x for o in done for x in o.itl]
    out_tok = sum(o.output_tokens for o in done)
    in_tok = sum(o.prompt_len for o in done)
    m = {
        "completed": len(done),
        "request_throughput": len(done) / dur,
        "output_throughput": out_tok / dur,
        "total_token_throughput": (in_tok + out_tok) / dur,
    }
    for name, xs in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        arr = np.asarray(xs or [0.0])
        m[f"mean_{name}_ms"] = float(arr.mean() * 1000)
        m[f"median_{name}_ms"] = float(np.median(arr) * 1000)
        m[f"p99_{name}_ms"] = float(np.percentile(arr, 99) * 1000)
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vllm-src", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--conc", type=int, required=True)
    ap.add_argument("--num-prompts", type=int, required=True)
    ap.add_argument("--isl", type=int, default=128)
    ap.add_argument("--osl", type=int, default=512)
    ap.add_argument("--warmups", type=int, default=None, help="default: conc")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(_main(a))))


if __name__ == "__main__":
    main()
