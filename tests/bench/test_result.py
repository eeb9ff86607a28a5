"""Result JSON: vLLM --save-result key superset, InferenceX process_result.py compatibility, pass/fail rules."""

from __future__ import annotations

import json

import pytest

from infersweep.bench.config import BenchConfig
from infersweep.bench.health import HealthSample
from infersweep.bench.records import RequestRecord
from infersweep.bench.result import build_result
from infersweep.bench.runner import RunOutput

# Keys `vllm bench serve --save-result` writes (vllm/benchmarks/serve.py), for percentile metrics
# ttft,tpot,itl,e2el and percentiles 90,99,99.9 as InferenceX passes them.
VLLM_KEYS = {
    "date", "backend", "endpoint_type", "label", "model_id", "tokenizer_id", "num_prompts", "request_rate",
    "burstiness", "max_concurrency", "duration", "completed", "failed", "total_input_tokens",
    "total_output_tokens", "request_throughput", "request_goodput", "output_throughput",
    "total_token_throughput", "max_output_tokens_per_s", "max_concurrent_requests", "input_lens",
    "output_lens", "ttfts", "errors", "latencies", "start_times",
} | {
    f"{s}_{m}_ms" for s in ("mean", "median", "std", "p90", "p99", "p99.9") for m in ("ttft", "tpot", "itl", "e2el")
}  # fmt: skip


def inferencex_process_result(bmk_result: dict, env: dict[str, str]) -> dict:
    """Faithful re-implementation of InferenceX utils/process_result.py (SemiAnalysisAI/InferenceX,
    Apache-2.0), minus file I/O: same fields, same loops, same conversions."""
    tp_size = int(env["TP"])
    data = {
        "hw": env.get("RUNNER_TYPE"),
        "tp": tp_size,
        "ep": int(env["EP_SIZE"]),
        "dp_attention": env.get("DP_ATTENTION"),
        "conc": int(bmk_result["max_concurrency"]),
        "model": bmk_result["model_id"],
        "framework": env.get("FRAMEWORK"),
        "precision": env.get("PRECISION"),
        "tput_per_gpu": float(bmk_result["total_token_throughput"]) / tp_size,
        "output_tput_per_gpu": float(bmk_result["output_throughput"]) / tp_size,
    }
    if env.get("MTP_MODE"):
        data["mtp"] = env["MTP_MODE"]
    for key, value in bmk_result.items():
        if key.endswith("ms"):
            data[key.replace("_ms", "")] = float(value) / 1000.0
        if "tpot" in key:
            data[key.replace("_ms", "").replace("tpot", "intvty")] = 1000.0 / float(value)
    return data


def make_run(n=8, *, osl=4, isl=10, bad_prompt=0, short=0, failed=0):
    recs = []
    for i in range(n):
        t0 = 0.01 * i
        reads = [t0 + 0.05 + 0.01 * k for k in range(osl)]
        r = RequestRecord(i, isl, osl, 0.0, t0, reads, [1] * osl, isl, osl)
        if i < bad_prompt:
            r.usage_prompt_tokens = isl + 1
        elif i < bad_prompt + short:
            r.usage_completion_tokens = osl - 1
        elif i >= n - failed:
            r.read_times, r.read_events, r.error = [], [], "HTTP 500: boom"
        recs.append(r)
    health = HealthSample(lags_s=[0.0001] * 50, cpu_s=0.1, wall_s=1.0, events=n * osl)
    t_end = max(r.t_end for r in recs)
    return RunOutput(records=recs, health=[health], t_start=0.0, t_end=t_end, t_start_unix=1.7e9,
                     t_end_unix=1.7e9 + t_end)


def config(**kw):
    base = {
        "base_url": "http://h:1",
        "model": "m",
        "tokenizer": "t",
        "isl": 10,
        "osl": 4,
        "conc": 2,
        "gpus": 2,
    }
    return BenchConfig(**(base | kw))


def test_top_level_is_a_superset_of_vllm_save_result():
    res = build_result(config(), make_run(), tokenizer_id="t", infersweep_version="0")
    assert VLLM_KEYS <= set(res)
    assert res["request_rate"] == "inf" and res["max_concurrency"] == 2 and res["num_prompts"] == 20
    json.dumps(res)  # plain JSON types only
    x = res["infersweep"]
    assert x["passed"] and x["fail_reasons"] == []
    assert x["tput_per_gpu"] == pytest.approx(res["total_token_throughput"] / 2)
    assert (
        x["range_ratio"]["random_range_ratio"] == 1.0
        and x["range_ratio"]["vllm_random_range_ratio_equivalent"] == 0.0
    )
    assert res["random_range_ratio_semantics"] == "inferencex"


# Keys InferenceX's utils/bench_serving/benchmark_serving.py (1ef98e3ed) writes with --save-result and without
# --save-detailed (benchmark_lib.sh's invocation); tests/bench/test_inferencex_postprocess.py derives the same set
# from the file itself when ../shared is present.
INFERENCEX_KEYS = {
    "date", "backend", "model_id", "tokenizer_id", "best_of", "num_prompts", "request_rate", "burstiness",
    "max_concurrency", "duration", "benchmark_start_time_unix", "benchmark_end_time_unix", "completed",
    "total_input_tokens", "total_output_tokens", "request_throughput", "request_goodput:", "output_throughput",
    "total_token_throughput", "input_lens", "output_lens",
} | {
    f"{s}_{m}_ms" for s in ("mean", "median", "std", "p90", "p99", "p99.9") for m in ("ttft", "tpot", "itl", "e2el")
}  # fmt: skip


def test_top_level_has_every_inferencex_benchmark_serving_key():
    res = build_result(config(slo_ttft_ms=1000.0), make_run(), tokenizer_id="t", infersweep_version="0")
    assert INFERENCEX_KEYS <= set(res)
    # the measured window in unix seconds (the telemetry clock), the same span as `duration`
    assert res["benchmark_start_time_unix"] == 1.7e9
    assert res["benchmark_end_time_unix"] - res["benchmark_start_time_unix"] == pytest.approx(res["duration"])
    assert res["request_goodput:"] == res["request_goodput"] == pytest.approx(res["request_throughput"])


def test_inferencex_process_result_reads_it_as_is():
    res = build_result(config(), make_run(), tokenizer_id="t", infersweep_version="0")
    env = {"TP": "2", "EP_SIZE": "1", "RUNNER_TYPE": "h100", "FRAMEWORK": "vllm", "PRECISION": "fp8"}
    agg = inferencex_process_result(json.loads(json.dumps(res)), env)
    assert agg["conc"] == 2
    assert agg["tput_per_gpu"] == pytest.approx(res["total_token_throughput"] / 2)
    assert agg["median_ttft"] == pytest.approx(res["median_ttft_ms"] / 1000)
    assert agg["p99.9_e2el"] == pytest.approx(res["p99.9_e2el_ms"] / 1000)
    assert agg["median_intvty"] == pytest.approx(1000 / res["median_tpot_ms"])
    assert agg["median_intvty"] == pytest.approx(res["infersweep"]["interactivity"]["median_intvty"])


def test_length_violations_fail_the_point_unless_allowed():
    res = build_result(config(), make_run(bad_prompt=1, short=2), tokenizer_id="t", infersweep_version="0")
    lc = res["infersweep"]["length_check"]
    assert (lc["prompt_tokens_mismatch"], lc["completion_tokens_mismatch"], lc["violations"]) == (1, 2, 3)
    assert lc["examples"][0] == {"index": 0, "intended_isl": 10, "server_prompt_tokens": 11,
                                 "intended_osl": 4, "server_completion_tokens": 4}  # fmt: skip
    assert not res["infersweep"]["passed"]
    assert "3 length violations" in res["infersweep"]["fail_reasons"][0]
    ok = build_result(
        config(fail_on_length_violation=False),
        make_run(bad_prompt=1),
        tokenizer_id="t",
        infersweep_version="0",
    )
    assert ok["infersweep"]["passed"] and ok["infersweep"]["length_check"]["violations"] == 1


def test_failure_threshold_is_strictly_above_five_percent():
    at = build_result(config(), make_run(n=20, failed=1), tokenizer_id="t", infersweep_version="0")
    assert at["failed"] == 1 and at["infersweep"]["passed"]  # 5 % is allowed
    above = build_result(config(), make_run(n=20, failed=2), tokenizer_id="t", infersweep_version="0")
    assert not above["infersweep"]["passed"]
    assert "2/20 requests failed" in above["infersweep"]["fail_reasons"][0]
    assert above["errors"][-1] == "HTTP 500: boom" and above["output_lens"][-1] == 0


def test_client_health_flags_client_bound():
    run = make_run()
    run.health = [HealthSample(lags_s=[0.005] * 100, cpu_s=0.9, wall_s=1.0, events=32)]
    res = build_result(config(), run, tokenizer_id="t", infersweep_version="0")
    h = res["infersweep"]["client_health"]
    assert res["infersweep"]["client_bound"] is True
    assert h["loop_lag_ms"]["p99"] == pytest.approx(5.0) and h["cpu_pct_max"] == pytest.approx(90.0)
    assert len(h["client_bound_reasons"]) == 2
    assert h["cpu_us_per_event"] == pytest.approx(0.9e6 / 32)


def test_goodput_written_only_with_slos():
    assert (
        build_result(config(), make_run(), tokenizer_id="t", infersweep_version="0")["request_goodput"]
        is None
    )
    res = build_result(config(slo_ttft_ms=1000.0), make_run(), tokenizer_id="t", infersweep_version="0")
    assert res["request_goodput"] == pytest.approx(res["request_throughput"])


def test_defaults_follow_inferencex():
    c = config(conc=8)
    assert (c.n_prompts, c.n_warmups, c.n_workers, c.random_range_ratio) == (80, 16, 1, 1.0)
    assert config(conc=600).n_workers >= 1
    with pytest.raises(ValueError, match="extra"):
        BenchConfig(base_url="http://h", model="m", tokenizer="t", isl=1, osl=1, conc=1, bogus=1)
    assert config(base_url="http://h:1/v1/").base_url == "http://h:1"
    with pytest.raises(ValueError, match="process_result"):
        config(metadata={"ttft_budget_ms": "x"})
