"""infersweep.bench: an exact, vLLM-compatible streaming benchmark client.

Public API (the DAG codes against it): :class:`BenchConfig`, :func:`run_benchmark`,
:func:`run_benchmark_async`, :func:`raise_if_failed`, :class:`BenchPointFailed`. Heavy imports
(aiohttp, numpy, tokenizers) happen on first attribute access so `import infersweep.bench` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from infersweep.bench.api import BenchPointFailed, raise_if_failed, run_benchmark, run_benchmark_async
    from infersweep.bench.config import BenchConfig

__all__ = ["BenchConfig", "BenchPointFailed", "raise_if_failed", "run_benchmark", "run_benchmark_async"]


def __getattr__(name: str) -> Any:
    if name == "BenchConfig":
        from infersweep.bench.config import BenchConfig

        return BenchConfig
    if name in {"BenchPointFailed", "raise_if_failed", "run_benchmark", "run_benchmark_async"}:
        from infersweep.bench import api

        return getattr(api, name)
    raise AttributeError(f"module 'infersweep.bench' has no attribute {name!r}")
