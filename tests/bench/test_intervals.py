"""Confidence intervals: exact statistics, honest coverage on synthetic data, determinism, degenerate input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infersweep.bench.intervals import (
    INTERVAL_METRICS,
    METHOD_BOOTSTRAP,
    METHOD_STUDENT_T,
    Interval,
    _quantiles,
    combine_repeats,
    point_intervals,
    point_values,
    repeat_intervals,
    t_cdf,
    t_ppf,
)


def _raw(n: int, rng: np.random.Generator, *, conc: int = 8, fail: int = 0) -> dict:
    """A closed-loop-like run: random lengths, TPOT ~ 20 ms, TTFT gamma; duration = busy time / conc."""
    out = rng.integers(100, 1025, n)
    inp = rng.integers(800, 1025, n)
    ttft = rng.gamma(4.0, 0.05, n)
    tpot = rng.normal(0.02, 0.002, n)
    lat = ttft + (out - 1) * tpot
    errors = [""] * n
    out_l, ttft_l, lat_l = out.tolist(), ttft.tolist(), lat.tolist()
    for i in range(fail):
        errors[i] = "HTTP 500: boom"
        out_l[i], ttft_l[i], lat_l[i] = 0, 0.0, 0.0
    return {"input_lens": inp.tolist(), "output_lens": out_l, "ttfts": ttft_l, "latencies": lat_l,
            "start_times": [0.0] * n, "errors": errors, "duration": float(np.sum(lat_l)) / conc}


# --- Student t ------------------------------------------------------------------------------------------------
def test_t_quantiles_match_the_tables() -> None:
    assert t_ppf(0.975, 1) == pytest.approx(12.7062, abs=1e-3)
    assert t_ppf(0.975, 2) == pytest.approx(4.3027, abs=1e-4)
    assert t_ppf(0.975, 4) == pytest.approx(2.7764, abs=1e-4)
    assert t_ppf(0.95, 10) == pytest.approx(1.8125, abs=1e-4)
    assert t_ppf(0.025, 4) == pytest.approx(-2.7764, abs=1e-4)
    assert t_ppf(0.975, math.inf) == pytest.approx(1.95996, abs=1e-5)
    assert t_cdf(t_ppf(0.9, 3), 3) == pytest.approx(0.9, abs=1e-9)


def test_interval_json_round_trip_and_std_error() -> None:
    iv = repeat_intervals([10.0, 11.0, 12.0])
    assert Interval.from_json(iv.to_json()) == iv
    assert set(iv.to_json()) == {"lo", "hi", "level", "method", "n"}
    assert iv.method == METHOD_STUDENT_T and iv.n == 3
    assert iv.mid == pytest.approx(11.0)
    assert iv.std_error == pytest.approx(1.0 / math.sqrt(3))  # s = 1
    with pytest.raises(ValueError):
        Interval(lo=2, hi=1, level=0.95, method="x", n=1)


# --- across runs ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [2, 3, 5])
def test_repeat_interval_covers_the_mean_at_its_level(n: int) -> None:
    rng = np.random.default_rng(1)
    hits = sum(repeat_intervals(rng.normal(100.0, 3.0, n).tolist()).contains(100.0) for _ in range(4000))
    assert 0.935 < hits / 4000 < 0.965


def test_repeat_interval_needs_two_values() -> None:
    with pytest.raises(ValueError):
        repeat_intervals([1.0])
    with pytest.raises(ValueError):
        repeat_intervals([1.0, math.nan])


# --- within a run ---------------------------------------------------------------------------------------------
def test_count_based_quantiles_equal_numpy_percentiles_of_the_resample() -> None:
    rng = np.random.default_rng(2)
    vals = rng.random(37)
    order = np.argsort(vals)
    idx = rng.integers(0, 37, size=(50, 37))
    counts = np.stack([np.bincount(r, minlength=37) for r in idx])
    got = _quantiles(counts[:, order], vals[order], (0.5, 0.99, 0.1))
    for q, arr in zip((50, 99, 10), got, strict=True):
        np.testing.assert_allclose(arr, np.percentile(vals[idx], q, axis=1))


def test_point_values_match_the_store_definitions() -> None:
    raw = _raw(200, np.random.default_rng(3), fail=5)
    v = point_values(raw, gpus=2)
    ok = slice(5, None)
    out = np.array(raw["output_lens"][ok], dtype=float)
    tokens = np.sum(raw["input_lens"][ok]) + out.sum()
    assert v["tput_per_gpu"] == pytest.approx(tokens / raw["duration"] / 2)
    assert v["output_tput_per_gpu"] == pytest.approx(out.sum() / raw["duration"] / 2)
    assert v["median_ttft_ms"] == pytest.approx(np.median(raw["ttfts"][ok]) * 1000)
    assert v["p99_ttft_ms"] == pytest.approx(np.percentile(raw["ttfts"][ok], 99) * 1000)
    tpot = (np.array(raw["latencies"][ok]) - np.array(raw["ttfts"][ok])) / (out - 1)
    assert v["median_tpot_ms"] == pytest.approx(np.median(tpot) * 1000)
    assert v["median_intvty"] == pytest.approx(1000 / v["median_tpot_ms"])
    assert v["median_e2el_ms"] == pytest.approx(np.median(raw["latencies"][ok]) * 1000)


def test_point_intervals_give_every_metric_around_the_estimate_and_are_deterministic() -> None:
    raw = _raw(500, np.random.default_rng(4))
    ivs = point_intervals(raw, gpus=1, n_boot=300, seed=9)
    assert set(ivs) == set(INTERVAL_METRICS)
    values = point_values(raw, gpus=1)
    for name, iv in ivs.items():
        assert iv.method == METHOD_BOOTSTRAP and iv.n == 500 and iv.level == 0.95
        assert iv.lo < values[name] < iv.hi, name
    assert point_intervals(raw, gpus=1, n_boot=300, seed=9) == ivs
    assert point_intervals(raw, gpus=1, n_boot=300, seed=10) != ivs


def test_within_run_bootstrap_covers_population_medians_of_iid_requests() -> None:
    # Requests i.i.d. from a known distribution: the population median of TTFT (gamma(4, 0.05)) is known,
    # and a 95 % percentile bootstrap over 400 requests covers it about 95 % of the time.
    true_median_ms = 1000 * 0.05 * 3.672060748850897  # median of gamma(shape 4, scale 1)
    rng = np.random.default_rng(5)
    trials = 200
    hits = 0
    for k in range(trials):
        iv = point_intervals(_raw(400, rng), gpus=1, n_boot=400, seed=k)["median_ttft_ms"]
        hits += iv.contains(true_median_ms)
    assert 0.90 <= hits / trials <= 0.99


def test_throughput_interval_covers_the_population_rate() -> None:
    # Closed loop: duration = Σ E2EL / conc, so the population rate is conc · E[tokens] / E[E2EL].
    rng = np.random.default_rng(6)
    e_out, e_in = (100 + 1024) / 2, (800 + 1024) / 2
    e_lat = 4 * 0.05 + (e_out - 1) * 0.02
    truth = 8 * (e_in + e_out) / e_lat
    trials, hits = 200, 0
    for k in range(trials):
        hits += point_intervals(_raw(300, rng), gpus=1, n_boot=400, seed=k)["tput_per_gpu"].contains(truth)
    assert 0.90 <= hits / trials <= 0.99


def test_failed_requests_are_left_out_and_counted() -> None:
    raw = _raw(100, np.random.default_rng(7), fail=30)
    ivs = point_intervals(raw, gpus=1, n_boot=100)
    assert ivs["median_ttft_ms"].n == 70
    assert ivs["median_ttft_ms"].lo > 0  # the failed requests' zeros are not in the sample


@pytest.mark.parametrize("raw", [
    {},  # no per-request lists
    {"input_lens": [], "output_lens": [], "ttfts": [], "latencies": [], "errors": [], "duration": 0.0},
    {"input_lens": [10], "output_lens": [5], "ttfts": [0.1], "latencies": [0.5], "errors": [""], "duration": 0.5},
    {"input_lens": [10, 10], "output_lens": [0, 0], "ttfts": [0, 0], "latencies": [0, 0],
     "errors": ["x", "y"], "duration": 1.0},
])
def test_degenerate_runs_give_no_interval_not_a_crash(raw: dict) -> None:
    assert point_intervals(raw, gpus=1) == {}


def test_single_token_outputs_have_no_tpot_but_keep_the_rest() -> None:
    raw = {"input_lens": [10] * 5, "output_lens": [1] * 5, "ttfts": [0.1, 0.2, 0.3, 0.2, 0.1],
           "latencies": [0.1, 0.2, 0.3, 0.2, 0.1], "errors": [""] * 5, "duration": 0.5}
    ivs = point_intervals(raw, gpus=1, n_boot=50)
    assert "median_tpot_ms" not in ivs and "median_intvty" not in ivs
    assert {"median_ttft_ms", "tput_per_gpu", "median_e2el_ms"} <= set(ivs)


def test_zero_duration_drops_throughput_only() -> None:
    raw = _raw(50, np.random.default_rng(8))
    raw["duration"] = 0.0
    ivs = point_intervals(raw, gpus=1, n_boot=50)
    assert "tput_per_gpu" not in ivs and "median_ttft_ms" in ivs


def test_bad_arguments_raise() -> None:
    raw = _raw(10, np.random.default_rng(9))
    for kw in ({"level": 1.0}, {"n_boot": 0}, {"gpus": 0}):
        with pytest.raises(ValueError):
            point_intervals(raw, **{"gpus": 1, **kw})


# --- combining repeats ----------------------------------------------------------------------------------------
def test_combine_repeats_uses_runs_when_there_are_two_or_more() -> None:
    rng = np.random.default_rng(10)
    raws = [_raw(200, rng) for _ in range(3)]
    values, ivs = combine_repeats(raws, gpus=2, n_boot=100)
    per_run = [point_values(r, gpus=2) for r in raws]
    for name in INTERVAL_METRICS:
        assert values[name] == pytest.approx(np.mean([v[name] for v in per_run]))
        assert ivs[name].method == METHOD_STUDENT_T and ivs[name].n == 3
        assert ivs[name] == repeat_intervals([v[name] for v in per_run])


def test_combine_repeats_of_one_run_falls_back_to_the_bootstrap() -> None:
    raw = _raw(200, np.random.default_rng(11))
    values, ivs = combine_repeats([raw], gpus=1, n_boot=100, seed=3)
    assert values == pytest.approx(point_values(raw, gpus=1))
    assert ivs == point_intervals(raw, gpus=1, n_boot=100, seed=3)


def test_combine_repeats_of_nothing_is_empty() -> None:
    assert combine_repeats([], gpus=1) == ({}, {})
    assert combine_repeats([{}], gpus=1) == ({}, {})
