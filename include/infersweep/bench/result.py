"""The result JSON: vLLM's ``--save-result`` keys at top level, infersweep extras under ``"infersweep"``.

InferenceX's ``utils/process_result.py`` reads the top level as is: it converts every key ending in ``ms`` with
``float()`` and every key containing ``tpot`` with ``1000/float()``, so no other top-level key may end in
``ms`` or contain ``tpot`` unless it is a non-zero number. Per-request TPOTs therefore live under extras.

Every key InferenceX's ``benchmark_serving.py`` writes is here, including ``benchmark_start_time_unix`` /
``benchmark_end_time_unix`` (the measured window in unix seconds, the clock of the GPU telemetry samples, which
``aggregate_power.py`` integrates power over) and its misspelt ``"request_goodput:"``.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson

from infersweep.bench.config import BenchConfig
from infersweep.bench.dataset import vllm_equivalent_range
from infersweep.bench.health import summarize_health
from infersweep.bench.metrics import goodput, headline, interactivity, latency_series, request_tpot, stats_ms
from infersweep.bench.records import RequestRecord
from infersweep.bench.runner import RunOutput
from infersweep.bench.window import peak_inflight, steady_state, timeline

#: Bumped when the meaning of a key changes.
RESULT_SCHEMA = 1
_MAX_EXAMPLES = 5
#: Characters of a cause (an error body, say) kept for the console and ``infersweep.error_causes``.
CAUSE_CHARS = 200
#: Distinct causes kept in the result (the full per-request list is ``errors``).
_MAX_CAUSES = 20

_CONNECT = re.compile(r"Cannot connect to host (?P<addr>\S+) ssl:\S+ \[(?P<why>.*)\]", re.S)
_HTTP = re.compile(r"HTTP (?P<status>\d{3})[^:]*: ?(?P<body>.*)", re.S)
_JSON_POS = re.compile(r":? line \d+ column \d+ \(char \d+\)")


def _clip(text: str, n: int = CAUSE_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def error_cause(error: str) -> str:
    """A request's error as a short cause that equal failures share (ports, bodies and parse positions kept
    apart only where they tell causes apart), e.g. ``connection refused (127.0.0.1:9)``."""
    kind, _, detail = error.partition(": ")
    if m := _HTTP.match(error):
        body = _clip(m["body"])
        return f"HTTP {m['status']}: {body}" if body else f"HTTP {m['status']}"
    if m := _CONNECT.search(error):
        why = m["why"]
        # asyncio and uvloop word a refused connect as "Connect call failed (addr)", dropping the errno
        if "refused" in why.lower() or why.startswith("Connect call failed"):
            return f"connection refused ({m['addr']})"
        return _clip(f"cannot connect to {m['addr']}: {why}")
    if kind == "JSONDecodeError":
        return _clip(f"malformed JSON in a stream event: {_JSON_POS.sub('', detail)}")
    if kind in ("AttributeError", "TypeError", "KeyError", "IndexError"):
        return _clip(f"unexpected stream event shape ({error})")
    if kind == "TimeoutError" and not detail.strip():  # aiohttp's total timeout carries no text
        return "request timed out (--request-timeout-s)"
    if error.startswith("stream ended without a token event"):
        return "stream ended without a token event (is this an OpenAI-compatible SSE stream?)"
    return _clip(error)


def error_causes(errors: Iterable[str | None]) -> list[dict[str, Any]]:
    """Failed requests grouped by :func:`error_cause`, most frequent first: ``[{"cause", "count"}]``."""
    counts = Counter(error_cause(e) for e in errors if e)
    return [{"cause": c, "count": n} for c, n in counts.most_common(_MAX_CAUSES)]


def format_causes(causes: list[dict[str, Any]], *, limit: int = 3) -> str:
    """``10 × connection refused (127.0.0.1:9); 2 × HTTP 500: …`` for the first ``limit`` causes."""
    text = "; ".join(f"{c['count']} × {c['cause']}" for c in causes[:limit])
    more = len(causes) - limit
    return text + (f"; and {more} more cause{'s' if more > 1 else ''} (see \"errors\" in the result)" if more > 0 else "")


def length_check(records: list[RequestRecord]) -> dict[str, Any]:
    """Compare server usage with the intended ISL/OSL of every completed request."""
    prompt_bad, completion_bad, missing = 0, 0, 0
    examples: list[dict[str, Any]] = []
    for r in records:
        if not r.success:
            continue
        if r.usage_prompt_tokens is None or r.usage_completion_tokens is None:
            missing += 1
            bad = True
        else:
            p_bad = r.usage_prompt_tokens != r.prompt_len
            c_bad = r.usage_completion_tokens != r.output_len
            prompt_bad += p_bad
            completion_bad += c_bad
            bad = p_bad or c_bad
        if bad and len(examples) < _MAX_EXAMPLES:
            examples.append(
                {
                    "index": r.index,
                    "intended_isl": r.prompt_len,
                    "server_prompt_tokens": r.usage_prompt_tokens,
                    "intended_osl": r.output_len,
                    "server_completion_tokens": r.usage_completion_tokens,
                }
            )
    return {
        "violations": prompt_bad + completion_bad + missing,
        "prompt_tokens_mismatch": prompt_bad,
        "completion_tokens_mismatch": completion_bad,
        "usage_missing": missing,
        "examples": examples,
    }


def build_result(
    cfg: BenchConfig,
    run: RunOutput,
    *,
    tokenizer_id: str,
    infersweep_version: str,
) -> dict[str, Any]:
    """Assemble the result dict for one point (pure: depends only on its inputs)."""
    recs = run.records
    dur = run.duration
    series = latency_series(recs)
    head = headline(recs, dur)
    stats: dict[str, float] = {}
    for name in ("ttft", "tpot", "itl", "e2el"):
        stats.update(stats_ms(series[name], name))
    queue_times = [r.t_sent - r.t_sched for r in recs]
    stats.update(stats_ms(queue_times, "client_queue_time"))
    good = goodput(recs, cfg.slos_ms, dur) if cfg.slos_ms else None
    tl = timeline(recs, run.t_start, run.t_end)
    checks = length_check(recs)
    n = len(recs)
    failed_frac = head["failed"] / n if n else 1.0
    reasons: list[str] = []
    if run.aborted:
        reasons.append(run.aborted)
    if n == 0 or head["completed"] == 0:
        reasons.append("no request completed")
    if failed_frac > cfg.max_failed_fraction:
        reasons.append(f"{head['failed']}/{n} requests failed (> {cfg.max_failed_fraction:.0%})")
    if cfg.fail_on_length_violation and checks["violations"]:
        reasons.append(
            f"{checks['violations']} length violations (prompt {checks['prompt_tokens_mismatch']}, "
            f"completion {checks['completion_tokens_mismatch']}, usage missing {checks['usage_missing']})"
        )
    health = summarize_health(run.health)
    tpots = [t for t in (request_tpot(r) for r in recs) if t is not None]
    tpot_stats = {k: v for k, v in stats.items() if "_tpot_" in k}
    # The client's own request path (t_sent → bytes written) is inside vLLM-defined TTFT/E2EL; report it,
    # and TTFT measured from the write, so its share is visible (perf/client_timing_truth.py).
    written = [r for r in recs if r.success and r.t_written]
    send_path = stats_ms([r.t_written - r.t_sent for r in written], "request_path")
    ttft_write = stats_ms([r.read_times[0] - r.t_written for r in written], "ttft_from_write")
    issue_wait = stats_ms([r.issue_wait for r in recs if r.t_sent], "issue_wait")
    steady = steady_state(recs, cfg.conc)
    if steady.get("available"):
        steady["start_offset_s"] = float(steady["start_offset_s"]) - run.t_start  # type: ignore[arg-type]
        steady["end_offset_s"] = float(steady["end_offset_s"]) - run.t_start  # type: ignore[arg-type]
    isl_lo, isl_hi = vllm_equivalent_range(cfg.isl, cfg.random_range_ratio)
    osl_lo, osl_hi = vllm_equivalent_range(cfg.osl, cfg.random_range_ratio)

    result: dict[str, Any] = {
        "date": time.strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": "openai-chat" if cfg.chat else "vllm",
        "backend": "openai-chat" if cfg.chat else "vllm",
        "label": None,
        "model_id": cfg.model,
        "tokenizer_id": tokenizer_id,
        "best_of": 1,
        "num_prompts": cfg.n_prompts,
        "request_rate": "inf" if math.isinf(cfg.request_rate) else cfg.request_rate,
        "burstiness": cfg.burstiness,
        "max_concurrency": cfg.conc,
        "random_input_len": cfg.isl,
        "random_output_len": cfg.osl,
        "random_range_ratio": cfg.random_range_ratio,
        "random_range_ratio_semantics": "inferencex",
        **cfg.metadata,
        "duration": dur,
        "benchmark_start_time_unix": run.t_start_unix,
        "benchmark_end_time_unix": run.t_end_unix,
        "completed": head["completed"],
        "failed": head["failed"],
        "total_input_tokens": head["total_input_tokens"],
        "total_output_tokens": head["total_output_tokens"],
        "request_throughput": head["request_throughput"],
        "request_goodput": good["request_goodput"] if good else None,
        # InferenceX's benchmark_serving.py spells the key with a colon (as vLLM once did); both are kept so
        # readers of either find it.
        "request_goodput:": good["request_goodput"] if good else None,
        "output_throughput": head["output_throughput"],
        "total_token_throughput": head["total_token_throughput"],
        "max_output_tokens_per_s": max((b["output_tokens_per_s"] for b in tl), default=0.0),
        "max_concurrent_requests": peak_inflight(recs),
        "input_lens": [r.input_tokens for r in recs],
        "output_lens": [r.output_tokens if r.success else 0 for r in recs],
        "ttfts": [r.ttft for r in recs],
        "latencies": [r.latency for r in recs],
        "start_times": [r.t_sent - run.t_start for r in recs],
        "errors": [r.error or "" for r in recs],
        **stats,
    }
    if cfg.save_detailed:
        result["itls"] = [r.itl() if r.success else [] for r in recs]
    if cfg.save_texts:
        result["generated_texts"] = [r.text for r in recs]
    result["infersweep"] = {
        "schema": RESULT_SCHEMA,
        "version": infersweep_version,
        "passed": not reasons,
        "fail_reasons": reasons,
        "client_bound": health["client_bound"],
        "config": orjson.loads(cfg.model_dump_json()),  # inf → "Infinity", not null
        "endpoint": cfg.endpoint,
        "gpus": cfg.gpus,
        **per_gpu_throughput(head["total_token_throughput"], head["output_throughput"], cfg),
        "interactivity": interactivity(tpot_stats, tpots),
        "goodput": good,
        "failed_fraction": failed_frac,
        "error_causes": error_causes(r.error for r in recs),
        "length_check": checks,
        "range_ratio": {
            "semantics": "inferencex: lengths uniform in [floor(r*L), L]; r=1 means exact",
            "random_range_ratio": cfg.random_range_ratio,
            "input_len_range": [isl_lo, isl_hi],
            "output_len_range": [osl_lo, osl_hi],
            "vllm_semantics": "vllm --random-range-ratio r' samples [floor(L(1-r')), ceil(L(1+r'))]; "
            "r'=0 is exact. The InferenceX interval is not centred on L, so no r' reproduces r<1.",
            "vllm_random_range_ratio_equivalent": 0.0 if cfg.random_range_ratio == 1.0 else None,
        },
        "warmups": {"requests": cfg.n_warmups, "failed": run.warmup_failed, "errors": run.warmup_errors},
        "per_request_tpot_s": [request_tpot(r) for r in recs],
        "client_request_path": {**send_path, **ttft_write, **issue_wait},
        "steady_state": steady,
        "timeline": tl,
        "client_health": health,
        "workers": len(run.health),
    }
    return result


def per_gpu_throughput(total: float, output: float, cfg: Any) -> dict[str, Any]:
    """Throughput per GPU as InferenceX's process_result computes it: total over every GPU; for a
    disaggregated server, output over the decode pool's GPUs and input over the prefill pool's."""
    out: dict[str, Any] = {"tput_per_gpu": total / cfg.gpus}
    if cfg.prefill_gpus is None:
        out["output_tput_per_gpu"] = output / cfg.gpus
        out["input_tput_per_gpu"] = (total - output) / cfg.gpus
        return out
    out["output_tput_per_gpu"] = output / (cfg.decode_gpus or cfg.gpus)
    out["input_tput_per_gpu"] = (total - output) / cfg.prefill_gpus
    out["num_prefill_gpu"] = cfg.prefill_gpus
    out["num_decode_gpu"] = cfg.decode_gpus or 0
    return out
