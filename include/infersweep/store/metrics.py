"""Map a benchmark point (`bench.point.PointResult`) onto the store's typed headline columns.

Metric keys follow vLLM's `benchmark_serving` (`median_ttft_ms`, `p99_tpot_ms`, `total_token_throughput`, …);
InferenceX's normalised keys in seconds (`median_ttft`, `p99_e2el`, …) are converted to ms. Per-GPU
throughput is derived from the totals when absent (InferenceX: divided by tp·pp·pcp), and interactivity
is 1000/TPOT(ms) (tokens/s/user) when absent. Nothing is invented: missing inputs leave NULLs.
"""

from __future__ import annotations

from typing import Any

from infersweep.bench.point import PointResult

LATENCIES = ("ttft", "tpot", "e2el")
STATS = ("median", "p99")
_TPUT = (("tput_per_gpu", "total_token_throughput"), ("output_tput_per_gpu", "output_throughput"),
         ("input_tput_per_gpu", "input_throughput"))


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def point_columns(point: PointResult, *, gpus: int | None = None) -> dict[str, Any]:
    """Typed columns + `metrics` JSON + `raw` JSON for one point."""
    metrics = point.metrics
    cols: dict[str, Any] = {}
    for stat in STATS:
        for lat in LATENCIES:
            ms = _num(metrics.get(f"{stat}_{lat}_ms"))
            if ms is None and _num(metrics.get(f"{stat}_{lat}")) is not None:
                ms = float(metrics[f"{stat}_{lat}"]) * 1000.0  # InferenceX agg keys are in seconds
            cols[f"{stat}_{lat}_ms"] = ms
        intvty = _num(metrics.get(f"{stat}_intvty"))
        tpot = cols[f"{stat}_tpot_ms"]
        cols[f"{stat}_intvty"] = intvty if intvty is not None else (1000.0 / tpot if tpot else None)
    for col, total_key in _TPUT:
        value = _num(metrics.get(col))
        total = _num(metrics.get(total_key))
        cols[col] = value if value is not None else (total / gpus if total is not None and gpus else None)
    completed = metrics.get("completed", metrics.get("num_completed"))
    failed = metrics.get("failed", metrics.get("num_failed"))
    n_completed, n_failed = _num(completed), _num(failed)
    cols["num_completed"] = int(n_completed) if n_completed is not None else None
    cols["num_failed"] = int(n_failed) if n_failed is not None else None
    cols["client_bound"] = point.client_bound
    cols["metrics"] = dict(metrics) or None
    cols["raw"] = point.raw
    return cols
