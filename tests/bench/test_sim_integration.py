"""One integration run against the simulated engine (`infersweep sim serve` in a subprocess)."""

from __future__ import annotations

import pytest

from infersweep.bench import BenchConfig, run_benchmark

from .conftest import sim_server

pytestmark = pytest.mark.integration


@pytest.fixture
def sim_url(tokenizer_dir):
    with sim_server(tokenizer_dir, "--time-scale", "200") as url:
        yield url


@pytest.mark.parametrize("chat", [False, True])
def test_against_simulated_engine(sim_url, tokenizer_dir, chat):
    cfg = BenchConfig(
        base_url=sim_url, model="sim-model", tokenizer=str(tokenizer_dir), isl=64, osl=16, conc=4,
        num_prompts=12, warmups=4, chat=chat, save_detailed=True,
    )  # fmt: skip
    res = run_benchmark(cfg)
    assert res["completed"] == 12, res["errors"]
    lc = res["infersweep"]["length_check"]
    assert lc["violations"] == 0, lc
    assert res["input_lens"] == [64] * 12 and res["output_lens"] == [16] * 12
    assert res["infersweep"]["passed"], res["infersweep"]["fail_reasons"]
    for ttft, e2el, tpot in zip(
        res["ttfts"], res["latencies"], res["infersweep"]["per_request_tpot_s"], strict=True
    ):
        assert 0 < ttft <= e2el and tpot == pytest.approx((e2el - ttft) / 15)
