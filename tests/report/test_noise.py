"""Noise-band estimation: repeats first, then history, never below the floor."""

from __future__ import annotations

import math

import pytest

from infersweep.report.noise import noise_band, pooled_relative_sigma, robust_relative_sigma


def test_no_data_gives_the_floor():
    band = noise_band(floor=0.05)
    assert band.rel == 0.05 and band.source == "floor" and band.n == 0


def test_repeats_win_over_history():
    # base repeats 100, 110 (mean 105); head 200, 190: pooled relative sigma from both sides
    band = noise_band(repeats=[[100, 110], [200, 190]], history=[1, 1000, 5, 70], floor=0.01, k=3)
    expected = math.sqrt(((5 / 105) ** 2 * 2 + (5 / 195) ** 2 * 2) / 2)
    assert band.source == "repeats"
    assert band.n == 4
    assert band.sigma_rel == pytest.approx(expected)
    assert band.rel == pytest.approx(3 * expected)


def test_repeats_below_floor_still_report_their_source_but_use_the_floor():
    band = noise_band(repeats=[[1000, 1001, 999]], floor=0.05)
    assert band.source == "repeats" and band.rel == 0.05


def test_single_samples_are_not_repeats():
    assert pooled_relative_sigma([[100], [120]]) is None
    assert noise_band(repeats=[[100], [120]]).source == "floor"


def test_history_uses_a_robust_sigma_that_ignores_one_step_change():
    steady = [100, 102, 98, 101, 99, 100]
    with_outlier = [*steady, 60]  # one real regression in the history must not widen the band much
    s1 = robust_relative_sigma(steady)
    s2 = robust_relative_sigma(with_outlier)
    assert s1 is not None and s2 is not None
    assert s2 < 0.03
    band = noise_band(history=with_outlier, floor=0.0, k=3)
    assert band.source == "history" and band.n == 7 and band.rel == pytest.approx(3 * s2)


def test_history_needs_three_samples():
    assert noise_band(history=[100, 150]).source == "floor"


def test_wide_history_widens_the_band_above_the_floor():
    band = noise_band(history=[100, 80, 120, 90, 110], floor=0.05)
    assert band.source == "history" and band.rel > 0.2


def test_none_and_nan_values_are_ignored():
    assert noise_band(history=[None, math.nan, 100, 100, 100]).source == "history"


def test_rejects_negative_floor_or_k():
    with pytest.raises(ValueError):
        noise_band(floor=-0.1)
    with pytest.raises(ValueError):
        noise_band(k=0)
