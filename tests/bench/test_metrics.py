"""Every metric formula on hand-computed traces (pure functions over recorded timestamps)."""

from __future__ import annotations

import pytest

from infersweep.bench.metrics import (
    goodput,
    headline,
    interactivity,
    latency_series,
    percentile_key,
    request_tpot,
    stats_ms,
)
from infersweep.bench.records import RequestRecord
from infersweep.bench.window import peak_inflight, steady_state, steady_window, timeline

A = pytest.approx


def rec(i, sent, reads, n=None, p=None, isl=10, osl=4, error=None, sched=0.0):
    times = [t for t, _ in reads]
    counts = [k for _, k in reads]
    return RequestRecord(
        index=i, prompt_len=isl, output_len=osl, t_sched=sched, t_sent=sent, read_times=times,
        read_events=counts, usage_prompt_tokens=p, usage_completion_tokens=n, error=error,
    )  # fmt: skip


@pytest.fixture
def trace():
    a = rec(0, 0.0, [(0.100, 1), (0.110, 1), (0.130, 2)], n=4, p=10)  # multi-token last event
    b = rec(1, 0.050, [(0.250, 1)], n=1, p=20, isl=20, osl=1)
    c = rec(2, 0.060, [], error="HTTP 500 Internal Server Error: boom")
    return [a, b, c]


def test_per_request_definitions(trace):
    a, b, c = trace
    assert a.ttft == A(0.100)
    assert a.latency == A(0.130)
    assert a.itl() == A([0.010, 0.020, 0.0])  # the 2-token event contributes one gap plus a 0 gap
    assert request_tpot(a) == A((0.130 - 0.100) / 3)  # (E2E − TTFT)/(n − 1) with n from usage
    assert request_tpot(b) is None  # n = 1: no TPOT (vLLM)
    assert not c.success and c.ttft == 0.0 and c.latency == 0.0 and request_tpot(c) is None


def test_series_and_vllm_statistics(trace):
    s = latency_series(trace)
    assert s["ttft"] == A([0.100, 0.200])
    assert s["e2el"] == A([0.130, 0.200])
    assert s["tpot"] == A([0.010])
    assert s["itl"] == A([0.010, 0.020, 0.0])  # pooled over requests; failed ones excluded
    itl = stats_ms(s["itl"], "itl")
    assert itl["mean_itl_ms"] == A(10.0)
    assert itl["median_itl_ms"] == A(10.0)
    assert itl["std_itl_ms"] == A((200 / 3) ** 0.5)  # population std, as numpy/vLLM
    assert itl["p90_itl_ms"] == A(18.0)  # linear interpolation on [0, 10, 20]
    assert itl["p99_itl_ms"] == A(19.8)
    assert itl["p99.9_itl_ms"] == A(19.98)
    ttft = stats_ms(s["ttft"], "ttft")
    assert (ttft["mean_ttft_ms"], ttft["median_ttft_ms"], ttft["std_ttft_ms"]) == (A(150), A(150), A(50))
    assert (ttft["p90_ttft_ms"], ttft["p99_ttft_ms"]) == (A(190), A(199))
    e2el = stats_ms(s["e2el"], "e2el")
    assert e2el["p90_e2el_ms"] == A(193.0) and e2el["std_e2el_ms"] == A(35.0)


def test_empty_series_is_zero_like_vllm():
    out = stats_ms([], "tpot")
    assert set(out) == {
        "mean_tpot_ms",
        "median_tpot_ms",
        "std_tpot_ms",
        "p90_tpot_ms",
        "p99_tpot_ms",
        "p99.9_tpot_ms",
    }
    assert all(v == 0.0 for v in out.values())


def test_percentile_key_spelling():
    assert [percentile_key(p) for p in (90, 99.0, 99.9)] == ["p90", "p99", "p99.9"]


def test_headline_throughputs(trace):
    h = headline(trace, duration_s=1.0)
    assert h["completed"] == 2 and h["failed"] == 1
    assert h["total_input_tokens"] == 30  # server usage.prompt_tokens of completed requests
    assert h["total_output_tokens"] == 5
    assert h["request_throughput"] == A(2.0)
    assert h["output_throughput"] == A(5.0)
    assert h["total_token_throughput"] == A(35.0)


def test_output_tokens_fall_back_to_event_count_without_usage():
    r = rec(0, 0.0, [(0.1, 1), (0.2, 3)], n=None, p=None, isl=7)
    assert r.output_tokens == 4 and r.input_tokens == 7


def test_goodput_and_attainment(trace):
    g = goodput(trace, {"ttft": 150.0}, duration_s=1.0)
    assert g["good_requests"] == 1 and g["request_goodput"] == A(1.0)
    g = goodput(trace, {"ttft": 150.0, "tpot": 5.0}, duration_s=2.0)
    # a: ttft ok, tpot 10 ms > 5 → bad; b: ttft 200 > 150 → bad (its TPOT counts as 0, which passes)
    assert g["good_requests"] == 0 and g["request_goodput"] == 0.0
    assert g["slo_attainment_by_metric"] == {"ttft": A(0.5), "tpot": A(0.5)}
    g = goodput(trace, {"e2el": 200.0}, duration_s=1.0)
    assert g["good_requests"] == 2 and g["slo_attainment"] == A(1.0)


def test_interactivity_two_definitions():
    a = rec(0, 0.0, [(0.1, 1), (0.13, 3)], n=4)  # TPOT 10 ms
    d = rec(1, 0.0, [(0.1, 1), (0.16, 3)], n=4)  # TPOT 20 ms
    tpots = latency_series([a, d])["tpot"]
    st = stats_ms(tpots, "tpot")
    it = interactivity(st, tpots)
    assert it["mean_intvty"] == A(1000 / 15)  # 1000 / mean TPOT (InferenceX)
    assert it["median_intvty"] == A(1000 / 15)
    assert it["p99_intvty"] == A(1000 / st["p99_tpot_ms"])  # worst 1 % of users
    assert it["mean_of_per_request_tok_s_per_user"] == A(75.0)  # mean(1/TPOT) = (100 + 50)/2
    assert "std_intvty" not in it


@pytest.fixture
def closed_loop():
    r1 = rec(0, 0.0, [(0.5, 1), (1.0, 1)], n=2)
    r2 = rec(1, 0.0, [(1.5, 1), (2.0, 1)], n=4)  # 2 tokens per event
    r3 = rec(2, 1.0, [(2.5, 1), (3.0, 1)], n=2)  # sent when r1 finished (lane hand-over)
    return [r1, r2, r3]


def test_steady_window_until_first_drain(closed_loop):
    assert steady_window(closed_loop, conc=2) == (0.0, 2.0)
    st = steady_state(closed_loop, conc=2)
    assert st["available"] and st["duration"] == A(2.0)
    assert st["output_throughput"] == A(3.0)  # 2 (r1) + 4 (r2) tokens arrived in [0, 2]
    assert st["request_throughput"] == A(1.0)  # r1 and r2 finished inside
    assert st["mean_inflight"] == A(2.0)
    assert st["requests_sent"] == 3


def test_steady_window_absent_when_level_never_reached(closed_loop):
    assert steady_window(closed_loop, conc=10) is None
    assert steady_state(closed_loop, conc=10)["available"] is False


def test_timeline_buckets(closed_loop):
    tl = timeline(closed_loop, 0.0, 3.0)
    assert [b["concurrency"] for b in tl] == A([2.0, 2.0, 1.0])
    assert [b["output_tokens_per_s"] for b in tl] == A([1.0, 3.0, 4.0])
    assert [b["completed"] for b in tl] == [0, 1, 2]


def test_peak_inflight_counts_hand_over_once(closed_loop):
    # r1 ends at 1.0 exactly when r3 starts: ends sort first, so the peak stays 2 (no phantom 3)
    assert peak_inflight(closed_loop) == 2
