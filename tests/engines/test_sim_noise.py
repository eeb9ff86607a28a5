"""Simulator noise: off is bit-identical, on has the configured spread, and a seed reproduces it."""

from __future__ import annotations

import dataclasses
import math
import statistics

import pytest

from infersweep.config.settings import SimNoiseSettings, SimSettings
from infersweep.engines.sim.config import parse_sim_argv
from infersweep.engines.sim.noise import NoiseModel
from infersweep.engines.sim.offline import closed_loop, closed_loop_run
from infersweep.engines.sim.profiles import get_gpu_profile, get_model_profile
from infersweep.engines.sim.roofline import Roofline, Topology
from infersweep.engines.sim.scheduler import SchedulerConfig
from infersweep.engines.sim_engine import SimulatedEngine
from infersweep.recipes.model import Recipe


def _setup() -> tuple[Roofline, SchedulerConfig]:
    rf = Roofline(get_model_profile("llama-3.1-8b"), get_gpu_profile("h100"), Topology(tp=1))
    return rf, SchedulerConfig(max_num_seqs=256, max_num_batched_tokens=8192, num_blocks=rf.num_kv_blocks(0.9, 16))


def _run(noise: NoiseModel | None, c: int = 8, n: int = 16) -> tuple[float, ...]:
    rf, cfg = _setup()
    return dataclasses.astuple(closed_loop(rf, cfg, concurrency=c, isl=512, osl=64, num_requests=n, noise=noise))


def test_noise_off_is_bit_identical_to_no_noise() -> None:
    for c in (1, 8, 32):
        plain = _run(None, c, 3 * c)
        assert _run(NoiseModel(), c, 3 * c) == plain
        assert _run(NoiseModel(run_sigma=0.0, step_sigma=0.0, seed=7), c, 3 * c) == plain


def test_noise_changes_results_and_a_seed_reproduces_them() -> None:
    noisy = NoiseModel(run_sigma=0.03, step_sigma=0.02, seed=5)
    assert _run(noisy) == _run(noisy)  # the same model replays the same path
    assert _run(noisy) != _run(None)
    assert _run(noisy) != _run(NoiseModel(run_sigma=0.03, step_sigma=0.02, seed=6))


def test_run_to_run_spread_of_throughput_matches_run_sigma() -> None:
    # Runs much shorter than tau_s: each sees about one factor, so throughput's relative spread ~ run_sigma.
    rf, cfg = _setup()
    tputs = [closed_loop(rf, cfg, concurrency=4, isl=256, osl=32, num_requests=8,
                         noise=NoiseModel(run_sigma=0.05, seed=k)).total_throughput for k in range(300)]
    rel_sd = statistics.stdev(tputs) / statistics.fmean(tputs)
    assert 0.035 < rel_sd < 0.065
    base = closed_loop(rf, cfg, concurrency=4, isl=256, osl=32, num_requests=8).total_throughput
    assert statistics.fmean(tputs) == pytest.approx(base, rel=0.015)  # mean factor 1


def test_step_jitter_alone_averages_out_of_throughput() -> None:
    rf, cfg = _setup()
    tputs = [closed_loop(rf, cfg, concurrency=4, isl=256, osl=128, num_requests=8,
                         noise=NoiseModel(step_sigma=0.05, seed=k)).total_throughput for k in range(40)]
    rel_sd = statistics.stdev(tputs) / statistics.fmean(tputs)
    assert 0 < rel_sd < 0.01  # ~0.05 / sqrt(steps): far below the per-step 5 %


def test_multiplier_has_mean_one_and_the_configured_spreads() -> None:
    m = NoiseModel(run_sigma=0.04, step_sigma=0.03, seed=1, tau_s=1.0)
    xs = m.multipliers([i * 0.5 for i in range(20_000)])  # half a tau apart: many nearly independent factors
    mean = statistics.fmean(xs)
    sd = statistics.pstdev(xs)
    assert mean == pytest.approx(1.0, abs=0.004)
    assert sd == pytest.approx(math.sqrt((1 + 0.04**2) * (1 + 0.03**2) - 1), rel=0.1)


def test_run_factor_is_correlated_within_tau_and_not_beyond() -> None:
    m = NoiseModel(run_sigma=0.05, seed=3, tau_s=30.0)
    close, far = [], []
    for seed in range(400):
        s = dataclasses.replace(m, seed=seed).sampler()
        a, b, c = s.run_factor(0.0), s.run_factor(1.0), s.run_factor(1000.0)
        close.append((math.log(a), math.log(b)))
        far.append((math.log(a), math.log(c)))

    def corr(pairs: list[tuple[float, float]]) -> float:
        xs, ys = zip(*pairs, strict=True)
        return statistics.correlation(xs, ys)

    assert corr(close) > 0.9  # exp(-1/30) = 0.97
    assert abs(corr(far)) < 0.2


def test_invalid_noise_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        NoiseModel(run_sigma=-0.1)
    with pytest.raises(ValueError):
        NoiseModel(step_sigma=0.9)
    with pytest.raises(ValueError):
        NoiseModel(tau_s=0)


def test_closed_loop_run_returns_the_raw_client_shape() -> None:
    rf, cfg = _setup()
    point, raw = closed_loop_run(rf, cfg, concurrency=4, lengths=[(256, 16), (300, 8)] * 4)
    assert raw["completed"] == point.completed == 8
    assert raw["output_lens"] == [16, 8] * 4 and raw["input_lens"] == [256, 300] * 4
    assert len(raw["ttfts"]) == len(raw["latencies"]) == len(raw["errors"]) == 8
    assert all(0 < t < lat for t, lat in zip(raw["ttfts"], raw["latencies"], strict=True))
    assert raw["total_token_throughput"] == pytest.approx((8 * 12 + 4 * 556) / raw["duration"])


def test_sweep_file_noise_block_validates_and_reaches_the_sim_server() -> None:
    sim = SimSettings.model_validate({"noise": {"run-sigma": 0.03, "step-sigma": 0.02, "seed": 4, "tau-s": 20}})
    assert sim.noise == SimNoiseSettings(run_sigma=0.03, step_sigma=0.02, seed=4, tau_s=20)
    assert SimSettings().noise is None
    for bad in ({"run-sigma": -1}, {"step-sigma": 0.6}, {"tau-s": 0}, {"sigma": 0.1}, {"seed": -1}):
        with pytest.raises(ValueError):
            SimSettings.model_validate({"noise": bad})
    engine = SimulatedEngine(model_profile="llama-3.1-8b", noise=sim.noise)
    recipe = Recipe(image="vllm/vllm-openai:v0", model="meta-llama/Llama-3.1-8B-Instruct", port=8123, serve_group="g1",
                    argv=("vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--tensor-parallel-size", "1"))
    argv = engine.command(recipe, None)
    cfg = parse_sim_argv(argv[argv.index("sim") + 2:])
    assert cfg.noise is not None and cfg.noise.run_sigma == 0.03 and cfg.noise.step_sigma == 0.02
    assert cfg.noise.tau_s == 20
    other = engine.command(recipe.model_copy(update={"serve_group": "g2"}), None)
    assert parse_sim_argv(other[other.index("sim") + 2:]).noise_seed != cfg.noise_seed  # a path per server
    quiet = SimulatedEngine(model_profile="llama-3.1-8b").command(recipe, None)
    assert not any(a.startswith("--noise") for a in quiet)
    assert parse_sim_argv(quiet[quiet.index("sim") + 2:]).noise is None
