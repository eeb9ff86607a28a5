"""Compare pairing and regression decisions (direction per metric, noise bands, status transitions)."""

from __future__ import annotations

import pytest

from infersweep.report.compare import compare, pair_points, relative_delta
from infersweep.report.gate import EXIT_NO_DATA, EXIT_OK, EXIT_REGRESSION, decide, group_history, run_gate
from infersweep.report.text import gate_table

from .factories import pt


# --- decide(): direction per metric -------------------------------------------------------------------------
def test_throughput_drop_beyond_band_is_a_regression():
    assert decide(1000, 900, higher_is_better=True, band=0.05) == "regression"


def test_throughput_rise_is_an_improvement_not_a_regression():
    assert decide(1000, 1100, higher_is_better=True, band=0.05) == "improvement"


def test_latency_rise_is_a_regression_and_drop_an_improvement():
    assert decide(100, 120, higher_is_better=False, band=0.05) == "regression"
    assert decide(100, 80, higher_is_better=False, band=0.05) == "improvement"


def test_change_inside_band_is_ok():
    assert decide(1000, 960, higher_is_better=True, band=0.05) == "ok"
    assert decide(1000, 950, higher_is_better=True, band=0.05) == "ok"  # exactly at the band: not beyond it


def test_missing_values_give_no_data():
    assert decide(None, 5, higher_is_better=True, band=0.05) == "no-data"
    assert decide(0, 5, higher_is_better=True, band=0.05) == "no-data"
    assert relative_delta(200, 150) == pytest.approx(-0.25)


# --- pairing ------------------------------------------------------------------------------------------------
def test_pairs_by_config_identity_and_point_not_by_image_or_run():
    base = [pt(8, run="r1", image="img:a"), pt(16, run="r1", image="img:a")]
    head = [pt(8, run="r2", image="img:b"), pt(32, run="r2", image="img:b")]
    pairs = {p.any.conc: p for p in pair_points(base, head)}
    assert pairs[8].status == "paired"
    assert pairs[16].status == "missing"
    assert pairs[32].status == "new"


def test_different_topology_precision_or_seq_len_never_pair():
    base = [pt(8), pt(8, tp=8), pt(8, precision="fp4"), pt(8, isl=8192)]
    head = [pt(8)]
    pairs = pair_points(base, head)
    assert sum(p.status == "paired" for p in pairs) == 1
    assert len(pairs) == 4


def test_sim_and_real_results_never_pair():
    pairs = pair_points([pt(8, engine="sim")], [pt(8, engine="vllm-docker")])
    assert {p.status for p in pairs} == {"missing", "new"}


def test_repeats_on_a_side_are_kept_and_the_side_value_is_their_median():
    base = [pt(8, tput=900), pt(8, tput=1000), pt(8, tput=1300)]
    (pair,) = pair_points(base, [pt(8, run="r2")])
    assert len(pair.base) == 3
    assert pair.value("tput_per_gpu", "base") == 1000


# --- the gate -----------------------------------------------------------------------------------------------
def test_gate_flags_a_throughput_drop_and_exits_1():
    result = run_gate(compare([pt(8, tput=1000)], [pt(8, run="r2", tput=800)]))
    (row,) = result.rows
    assert row.verdict == "regression"
    assert "tput/GPU -20.0%" in row.note
    assert result.exit_code == EXIT_REGRESSION


def test_gate_flags_a_latency_rise_even_with_throughput_unchanged():
    result = run_gate(compare([pt(8, ttft=100)], [pt(8, run="r2", ttft=150)]))
    assert result.rows[0].verdict == "regression"
    assert {d.metric: d.verdict for d in result.rows[0].deltas}["median_ttft_ms"] == "regression"


def test_gate_passes_changes_within_the_floor():
    result = run_gate(compare([pt(8, tput=1000)], [pt(8, run="r2", tput=970)]), floor=0.05)
    assert result.rows[0].verdict == "ok"
    assert result.exit_code == EXIT_OK


def test_noisy_repeats_widen_the_band_and_absorb_the_drop():
    base = [pt(8, tput=1000), pt(8, tput=800), pt(8, tput=1200)]  # very noisy point
    head = [pt(8, run="r2", tput=850)]
    result = run_gate(compare(base, head))
    d = {d.metric: d for d in result.rows[0].deltas}["tput_per_gpu"]
    assert d.band.source == "repeats" and d.band.rel > 0.15
    assert d.verdict == "ok"


def test_history_band_is_used_when_there_are_no_repeats():
    head = [pt(8, run="r9", tput=900)]
    history = group_history([pt(8, run=f"h{i}", tput=t) for i, t in enumerate([1000, 850, 1150, 900, 1100])])
    result = run_gate(compare([pt(8, tput=1000)], head), history=history)
    d = {d.metric: d for d in result.rows[0].deltas}["tput_per_gpu"]
    assert d.band.source == "history"
    assert d.verdict == "ok"  # -10 % is inside this point's historical spread
    tight = run_gate(compare([pt(8, tput=1000)], head))
    assert tight.rows[0].verdict == "regression"  # the same drop with only the 5 % floor


def test_a_point_that_now_fails_is_a_regression_with_its_class():
    result = run_gate(compare([pt(8)], [pt(8, run="r2", status="failed", failure_kind="cuda_oom")]))
    assert result.rows[0].verdict == "failed"
    assert "cuda_oom" in result.rows[0].note
    assert result.exit_code == EXIT_REGRESSION


def test_new_missing_fixed_and_still_failing_points_do_not_fail_the_gate():
    base = [pt(8), pt(16), pt(32, status="failed"), pt(64, status="failed")]
    head = [pt(8, run="r2"), pt(32, run="r2"), pt(64, run="r2", status="failed"), pt(128, run="r2")]
    result = run_gate(compare(base, head))
    verdicts = {r.pair.any.conc: r.verdict for r in result.rows}
    assert verdicts == {8: "ok", 16: "missing", 32: "fixed", 64: "both-failed", 128: "new"}
    assert result.exit_code == EXIT_OK


def test_nothing_comparable_is_exit_2_not_a_silent_pass():
    result = run_gate(compare([pt(8)], [pt(16, run="r2")]))
    assert result.exit_code == EXIT_NO_DATA


def test_unknown_metric_is_rejected_before_judging():
    with pytest.raises(ValueError, match="unknown metric"):
        run_gate(compare([pt(8)], [pt(8)]), metrics=["tput"])


def test_gate_table_lists_every_point_with_deltas_and_verdicts():
    result = run_gate(compare([pt(8, tput=1000), pt(16)], [pt(8, run="r2", tput=800), pt(16, run="r2")]))
    text = gate_table(result)
    assert "REGRESSION" in text and "1000.0→800.0 (-20.0%!)" in text
    assert "conc=16" in text
    assert text.splitlines()[-1].startswith("gate FAIL")
    assert result.to_dict()["regressions"] == 1
