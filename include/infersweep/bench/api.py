"""Public entry points: :func:`run_benchmark` (sync, uvloop) and :func:`run_benchmark_async`."""

from __future__ import annotations

import asyncio
from typing import Any

from infersweep.bench.config import BenchConfig
from infersweep.bench.dataset import build_requests
from infersweep.bench.load import arrival_offsets
from infersweep.bench.result import build_result
from infersweep.bench.runner import RunOutput, run_shard
from infersweep.bench.tokenizer import load_tokenizer
from infersweep.faults.errors import InfersweepError


class BenchPointFailed(InfersweepError, RuntimeError):
    """A point failed its acceptance rules (failed requests, length violations); ``result`` is attached."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        reasons = "; ".join(result.get("infersweep", {}).get("fail_reasons", [])) or "unknown"
        super().__init__(f"benchmark point failed (conc={result.get('max_concurrency')}): {reasons}")


def raise_if_failed(result: dict[str, Any]) -> dict[str, Any]:
    """Return ``result`` unchanged, or raise :class:`BenchPointFailed` when ``infersweep.passed`` is false."""
    if not result.get("infersweep", {}).get("passed", False):
        raise BenchPointFailed(result)
    return result


def _prepare(cfg: BenchConfig) -> tuple[Any, Any, Any, list[float] | None, str]:
    tok = load_tokenizer(cfg.tokenizer)
    # Warm-ups get their own distinct prompts (offset past the measured ones), never prompt 0 repeated.
    specs = build_requests(cfg, tok, cfg.n_prompts, offset=0)
    warm = build_requests(cfg, tok, cfg.n_warmups, offset=cfg.n_prompts) if cfg.n_warmups else []
    arrivals = arrival_offsets(cfg.n_prompts, cfg.request_rate, cfg.burstiness, cfg.seed)
    return tok, warm, specs, arrivals, tok.source


def _version() -> str:
    from infersweep import __version__

    return str(__version__)


async def run_benchmark_async(cfg: BenchConfig) -> dict[str, Any]:
    """Run one point (one concurrency) inside the caller's event loop and return the result dict.

    Prompt building (tokenizer work) and the multi-process mode run in a thread so the loop stays free.
    Does not raise on a failed point: check ``result["infersweep"]["passed"]`` or call
    :func:`raise_if_failed`."""
    loop = asyncio.get_running_loop()
    _, warm, specs, arrivals, tok_id = await loop.run_in_executor(None, _prepare, cfg)
    run: RunOutput
    if cfg.n_workers > 1:
        from infersweep.bench.multiproc import run_multiprocess

        run = await loop.run_in_executor(None, run_multiprocess, cfg, warm, specs, arrivals, cfg.n_workers)
    else:
        run = await run_shard(cfg, warm, specs, cfg.conc, arrivals)
    return build_result(cfg, run, tokenizer_id=tok_id, infersweep_version=_version())


def run_benchmark(cfg: BenchConfig) -> dict[str, Any]:
    """Run one point (one concurrency) on a fresh uvloop loop and return the result dict (see the async
    variant for semantics). Must not be called from inside a running event loop."""
    _, warm, specs, arrivals, tok_id = _prepare(cfg)
    if cfg.n_workers > 1:
        from infersweep.bench.multiproc import run_multiprocess

        run = run_multiprocess(cfg, warm, specs, arrivals, cfg.n_workers)
    else:
        import uvloop

        run = uvloop.run(run_shard(cfg, warm, specs, cfg.conc, arrivals))
    return build_result(cfg, run, tokenizer_id=tok_id, infersweep_version=_version())
