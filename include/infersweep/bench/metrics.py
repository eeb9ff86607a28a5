"""vLLM-compatible metrics as pure functions over :class:`RequestRecord` lists.

Definitions (vllm/benchmarks/serve.py ``calculate_metrics``):
- TTFT = first token event − send; E2EL = last token event − send (usage chunk and [DONE] excluded).
- TPOT = (E2EL − TTFT)/(n − 1) per request with n = usage.completion_tokens > 1; aggregated over requests.
- ITL = gaps between consecutive token events, pooled over all requests (one gap per event, not per token:
  with multi-token events ITL ≠ TPOT, exactly as in vLLM).
- Statistics: numpy mean, median, population std and linear-interpolated percentiles, in ms; an empty
  series yields 0 (vLLM's ``np.mean(x or 0)``).
- Throughputs divide by the whole-run duration; total = Σ prompt tokens + Σ output tokens of completed
  requests (prompt tokens from the server's usage when present).
- Goodput: a completed request is good when each SLO'd metric ≤ its SLO (TPOT of n ≤ 1 counts as 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from infersweep.bench.records import RequestRecord

#: The percentiles InferenceX asks for (``--metric-percentiles 90,99,99.9``).
PERCENTILES: tuple[float, ...] = (90.0, 99.0, 99.9)
METRICS: tuple[str, ...] = ("ttft", "tpot", "itl", "e2el")


def percentile_key(p: float) -> str:
    """vLLM's spelling: ``p99`` for integral percentiles, ``p99.9`` otherwise."""
    return f"p{int(p)}" if float(p).is_integer() else f"p{p}"


def stats_ms(
    values_s: Sequence[float], name: str, percentiles: Sequence[float] = PERCENTILES
) -> dict[str, float]:
    """``mean_/median_/std_/pXX_<name>_ms`` of seconds-valued ``values_s``, as vLLM writes them."""
    arr = np.asarray(values_s, dtype=float) if len(values_s) else np.asarray([0.0])
    out = {
        f"mean_{name}_ms": float(np.mean(arr) * 1000.0),
        f"median_{name}_ms": float(np.median(arr) * 1000.0),
        f"std_{name}_ms": float(np.std(arr) * 1000.0),
    }
    for p in percentiles:
        out[f"{percentile_key(p)}_{name}_ms"] = float(np.percentile(arr, p) * 1000.0)
    return out


def request_tpot(rec: RequestRecord) -> float | None:
    """TPOT in seconds of one completed request, or None when it produced ≤ 1 token."""
    n = rec.output_tokens
    if not rec.success or n <= 1:
        return None
    return (rec.latency - rec.ttft) / (n - 1)


def latency_series(records: Sequence[RequestRecord]) -> dict[str, list[float]]:
    """Per-metric series in seconds over completed requests (ITL pooled over all requests)."""
    done = [r for r in records if r.success]
    itls: list[float] = []
    for r in done:
        itls.extend(r.itl())
    tpots = [t for t in (request_tpot(r) for r in done) if t is not None]
    return {
        "ttft": [r.ttft for r in done],
        "tpot": tpots,
        "itl": itls,
        "e2el": [r.latency for r in done],
    }


def goodput(
    records: Sequence[RequestRecord], slos_ms: dict[str, float], duration_s: float
) -> dict[str, object]:
    """Good requests/s against the SLOs (vLLM's ``request_goodput``) plus attainment per metric."""
    done = [r for r in records if r.success]
    per_metric = {
        "ttft": [r.ttft for r in done],
        "tpot": [request_tpot(r) or 0.0 for r in done],
        "e2el": [r.latency for r in done],
    }
    good = 0
    met = dict.fromkeys(slos_ms, 0)
    for i in range(len(done)):
        ok = True
        for name, slo in slos_ms.items():
            if per_metric[name][i] * 1000.0 <= slo:
                met[name] += 1
            else:
                ok = False
        good += ok
    return {
        "request_goodput": good / duration_s if duration_s > 0 else 0.0,
        "good_requests": good,
        "slo_attainment": good / len(done) if done else 0.0,
        "slo_attainment_by_metric": {k: (v / len(done) if done else 0.0) for k, v in met.items()},
        "slos_ms": dict(slos_ms),
    }


def interactivity(tpot_stats: dict[str, float], tpots_s: Sequence[float]) -> dict[str, float | None]:
    """Interactivity (tok/s/user) = 1000/TPOT_ms for each TPOT statistic (InferenceX), plus the mean of
    per-request 1/TPOT (aiperf's definition; mean of reciprocals ≠ reciprocal of the mean)."""
    out: dict[str, float | None] = {}
    for key, value in tpot_stats.items():
        if key.startswith("std_"):
            continue  # 1000/std is meaningless (InferenceX writes it anyway); omitted
        out[key.replace("tpot_ms", "intvty")] = 1000.0 / value if value > 0 else None
    out["mean_of_per_request_tok_s_per_user"] = (
        float(np.mean([1.0 / t for t in tpots_s if t > 0])) if any(t > 0 for t in tpots_s) else None
    )
    return out


def headline(records: Sequence[RequestRecord], duration_s: float) -> dict[str, float | int]:
    """completed/failed, token totals and throughputs over the whole run, as vLLM computes them."""
    done = [r for r in records if r.success]
    total_in = sum(r.input_tokens for r in done)
    total_out = sum(r.output_tokens for r in done)
    dur = duration_s if duration_s > 0 else float("nan")
    return {
        "completed": len(done),
        "failed": len(records) - len(done),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(done) / dur,
        "output_throughput": total_out / dur,
        "total_token_throughput": (total_in + total_out) / dur,
    }
