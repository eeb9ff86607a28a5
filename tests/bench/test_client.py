"""The client against in-test mock servers: parsing, lengths, failures, modes, and timing definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from infersweep.bench import BenchConfig, run_benchmark
from infersweep.bench.api import BenchPointFailed, raise_if_failed
from infersweep.bench.load import arrival_offsets
from infersweep.bench.tokenizer import load_tokenizer

from .conftest import ServerThread, aiohttp_openai_mock, package_mock


def cfg(url, tokenizer_dir, **kw):
    base = {"base_url": url, "model": "m", "tokenizer": str(tokenizer_dir), "isl": 24, "osl": 6, "conc": 3,
            "num_prompts": 9, "warmups": 2}  # fmt: skip
    return BenchConfig(**(base | kw))


def test_completions_end_to_end(aiohttp_mock, tokenizer_dir):
    res = run_benchmark(cfg(aiohttp_mock.url, tokenizer_dir, save_detailed=True, save_texts=True))
    assert res["infersweep"]["passed"], res["infersweep"]["fail_reasons"]
    assert res["completed"] == 9 and res["failed"] == 0
    assert res["input_lens"] == [24] * 9 and res["output_lens"] == [6] * 9
    assert res["total_output_tokens"] == 54
    assert all(len(x) == 5 for x in res["itls"])  # one gap per event after the first; comments ignored
    assert res["generated_texts"] == ["xxxxxx"] * 9
    bodies = aiohttp_mock.state["bodies"]
    assert len(bodies) == 11  # 2 warm-ups + 9 measured
    assert len({tuple(b["prompt"]) for b in bodies}) == 11  # warm-ups use distinct prompts
    assert all(b["max_tokens"] == 6 and b["ignore_eos"] for b in bodies)
    assert res["infersweep"]["warmups"] == {"requests": 2, "failed": 0, "errors": []}
    path = res["infersweep"]["client_request_path"]
    assert path["median_request_path_ms"] >= 0 and "p99_ttft_from_write_ms" in path


def test_crlf_separators_and_event_fields(tokenizer_dir):
    with ServerThread(aiohttp_openai_mock(crlf=True)) as srv:
        res = run_benchmark(cfg(srv.url, tokenizer_dir))
    assert res["completed"] == 9 and res["total_output_tokens"] == 54 and res["infersweep"]["passed"]


def test_failed_requests_fail_the_point(tokenizer_dir):
    with ServerThread(aiohttp_openai_mock(fail_every=2)) as srv:
        res = run_benchmark(cfg(srv.url, tokenizer_dir, warmups=0, num_prompts=10))
    assert res["failed"] == 5 and res["completed"] == 5
    assert any(e.startswith("HTTP 500") for e in res["errors"])
    assert not res["infersweep"]["passed"]
    with pytest.raises(BenchPointFailed, match="requests failed"):
        raise_if_failed(res)


@pytest.mark.parametrize(
    ("knob", "field"),
    [("prompt_delta", "prompt_tokens_mismatch"), ("short_by", "completion_tokens_mismatch")],
)
def test_length_violations_are_counted(tokenizer_dir, knob, field):
    with ServerThread(aiohttp_openai_mock(**{knob: 1})) as srv:
        res = run_benchmark(cfg(srv.url, tokenizer_dir))
    assert res["infersweep"]["length_check"][field] == 9
    assert not res["infersweep"]["passed"]


def test_chat_mode_exact_lengths_and_role_chunk_skipped(tokenizer_dir):
    tok = load_tokenizer(str(tokenizer_dir))
    with ServerThread(package_mock(tokenizer=tok, stamp=True)) as srv:
        res = run_benchmark(cfg(srv.url, tokenizer_dir, chat=True, isl=40, save_detailed=True))
    assert res["infersweep"]["passed"], res["infersweep"]["fail_reasons"]
    assert res["input_lens"] == [40] * 9  # server-side count of the chat-templated prompt
    assert all(len(x) == 5 for x in res["itls"])  # 6 content events; the role-only delta is not a token
    assert res["backend"] == "openai-chat" and res["infersweep"]["endpoint"] == "/v1/chat/completions"


def test_multi_token_events_itl_per_event_tpot_per_token(tokenizer_dir):
    with ServerThread(package_mock(tokens_per_event=4, itl_s=0.001, stamp=True)) as srv:
        res = run_benchmark(cfg(srv.url, tokenizer_dir, osl=10, save_detailed=True))
    assert res["output_lens"] == [10] * 9  # from usage, not from the 3 events
    assert all(len(x) == 2 for x in res["itls"])  # ceil(10/4) = 3 events → 2 gaps, as vLLM
    for ttft, e2el, tpot in zip(
        res["ttfts"], res["latencies"], res["infersweep"]["per_request_tpot_s"], strict=True
    ):
        assert tpot == pytest.approx((e2el - ttft) / 9)


def test_timing_definitions_against_stamped_truth(tokenizer_dir):
    """Definitions only (no timing tolerance): the client's stamps bracket the mock's stamps."""
    from infersweep.bench.dataset import build_requests
    from infersweep.bench.runner import run_shard

    with ServerThread(package_mock(ttft_s=0.01, itl_s=0.002, stamp=True)) as srv:
        c = cfg(srv.url, tokenizer_dir, conc=4, num_prompts=8)
        tok = load_tokenizer(str(tokenizer_dir))
        import uvloop

        run = uvloop.run(run_shard(c, [], build_requests(c, tok, 8), 4, None))
        stamps = srv.state.stamps
    for r in run.records:
        st = stamps[f"infersweep-{r.index}"]
        assert r.num_events == len(st["sends"]) == 6
        assert r.t_sent <= r.t_written <= st["recv"]  # stamped, then written, then seen by the server
        assert r.read_times[0] >= st["sends"][0] and r.read_times[-1] >= st["sends"][-1]
        assert r.ttft >= st["sends"][0] - st["recv"]  # so client TTFT ≥ server TTFT, by construction
        assert r.ttft == r.read_times[0] - r.t_sent and r.latency == r.read_times[-1] - r.t_sent


def test_rate_mode_schedule(tokenizer_dir, aiohttp_mock):
    offs = arrival_offsets(50, rate=100.0, burstiness=0.5, seed=1)
    assert offs is not None and offs[-1] == pytest.approx(0.5) and np.all(np.diff(offs) >= 0)
    assert arrival_offsets(5, math.inf, 1.0, 0) is None
    res = run_benchmark(
        cfg(aiohttp_mock.url, tokenizer_dir, request_rate=200.0, burstiness=0.5, num_prompts=12)
    )
    assert res["completed"] == 12 and res["request_rate"] == 200.0 and res["burstiness"] == 0.5
    assert res["max_concurrent_requests"] <= 3
    assert res["duration"] >= 12 / 200.0  # the last arrival is at exactly n/rate (definition, not timing)


@pytest.mark.integration
def test_multiprocess_mode_merges_workers(tokenizer_dir, aiohttp_mock):
    res = run_benchmark(cfg(aiohttp_mock.url, tokenizer_dir, conc=4, num_prompts=16, workers=2))
    assert res["completed"] == 16 and res["infersweep"]["workers"] == 2
    assert res["infersweep"]["client_health"]["processes"] == 2
    assert res["output_lens"] == [6] * 16 and res["infersweep"]["passed"]
    assert min(res["start_times"]) >= 0.0
    assert res["infersweep"]["client_health"]["stream_events"] == 96
    # the window's unix ends come from different workers' clock offsets, yet span exactly `duration`
    # (perf_counter and time.time() are both system-wide; only a wall-clock step could part them)
    window = res["benchmark_end_time_unix"] - res["benchmark_start_time_unix"]
    assert window == pytest.approx(res["duration"], abs=0.01)


def test_async_variant_runs_in_the_callers_loop(aiohttp_mock, tokenizer_dir):
    import asyncio

    from infersweep.bench import run_benchmark_async

    async def main():
        # another task keeps running meanwhile: the benchmark must not block the caller's loop
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        res = await run_benchmark_async(cfg(aiohttp_mock.url, tokenizer_dir))
        t.cancel()
        return res, ticks

    res, ticks = asyncio.run(main())
    assert res["completed"] == 9 and res["infersweep"]["passed"] and ticks > 0


def test_stalled_stream_fails_the_request_not_the_run(tokenizer_dir):
    with ServerThread(package_mock(itl_s=30.0)) as srv:  # first token, then silence
        res = run_benchmark(
            cfg(srv.url, tokenizer_dir, num_prompts=2, warmups=0, conc=2, stall_timeout_s=0.3)
        )
    assert res["failed"] == 2 and not res["infersweep"]["passed"]
    assert all(e.startswith("stalled: no token event for 0.3 s") for e in res["errors"])


def test_issue_gate_one_request_path_at_a_time(tokenizer_dir):
    """A wave of C requests goes through the request path one at a time: each send stamp follows the
    previous request's write, so no TTFT holds another request's path; the wait is reported."""
    from infersweep.bench.dataset import build_requests
    from infersweep.bench.runner import run_shard

    with ServerThread(package_mock(ttft_s=0.005, itl_s=0.001, stamp=True)) as srv:
        c = cfg(srv.url, tokenizer_dir, conc=16, num_prompts=32)
        tok = load_tokenizer(str(tokenizer_dir))
        import uvloop

        run = uvloop.run(run_shard(c, [], build_requests(c, tok, 32), 16, None))
    spans = sorted((r.t_sent, r.t_written) for r in run.records)
    assert all(r.success and r.t_written >= r.t_sent for r in run.records)
    # gate intervals [t_sent, t_written] never overlap
    assert all(nxt[0] >= prev[1] for prev, nxt in itertools.pairwise(spans))
    assert any(r.issue_wait > 0 for r in run.records)  # the first wave queued at the gate


def test_issue_gate_released_by_a_request_that_never_writes(tokenizer_dir):
    """A request that fails before its write (connection refused) opens the gate for the next one."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens here
    res = run_benchmark(cfg(f"http://127.0.0.1:{port}", tokenizer_dir, conc=3, num_prompts=6, warmups=0))
    assert res["failed"] == 6 and res["completed"] == 0  # all six were attempted: the gate never stuck
    assert all("Connect" in e or "connect" in e for e in res["errors"])
    assert "p99_issue_wait_ms" in res["infersweep"]["client_request_path"]
