"""Expansion rules and filters, on small inline entries (reference semantics of generate_sweep_configs.py)."""

from __future__ import annotations

from typing import Any

import pytest

from infersweep.config.master import MasterEntry, geometric
from infersweep.plan.planner import (
    MIN_EVAL_CONC,
    PlanFilterError,
    PlanFilters,
    expand,
    expand_jobs,
    mark_eval,
)


def entry(points: list[dict[str, Any]], *, isl: int = 1024, osl: int = 1024, **over: Any) -> MasterEntry:
    raw: dict[str, Any] = {
        "image": "vllm/vllm-openai:v1", "model": "org/model", "model-prefix": "m", "runner": "h200",
        "precision": "fp8", "framework": "vllm", "multinode": False,
        "scenarios": {"fixed-seq-len": [{"isl": isl, "osl": osl, "search-space": points}]},
    }
    raw.update(over)
    return MasterEntry.model_validate(raw)


def concs(entries: dict[str, MasterEntry], **filters: Any) -> list[int]:
    return [j.conc for j in expand_jobs(entries, PlanFilters(**filters))]


@pytest.mark.parametrize(("start", "end", "want"), [
    (4, 100, [4, 8, 16, 32, 64, 100]),
    (4, 64, [4, 8, 16, 32, 64]),
    (256, 256, [256]),
    (1, 3, [1, 2, 3]),
    (3, 5, [3, 5]),
])
def test_geometric_stepping_clamps_overshoot(start: int, end: int, want: list[int]) -> None:
    """×2 while ≤ end; an overshoot is clamped to end."""
    assert geometric(start, end) == want


def test_conc_list_is_used_as_given() -> None:
    """conc-list keeps its order and values (no sorting, no stepping)."""
    assert concs({"k": entry([{"tp": 8, "conc-list": [12, 4, 48]}])}) == [12, 4, 48]


def test_defaults_and_derived_fields() -> None:
    """ep 1, dp-attn false, spec none; max-model-len = isl+osl+256; exp-name <prefix>_<1k1k|8k1k|isl_osl>."""
    jobs = expand_jobs({"k": entry([{"tp": 8, "conc-list": [4]}], isl=8192, osl=1024)})
    row = jobs[0].to_inferencex()
    assert (row["ep"], row["dp-attn"], row["spec-decoding"]) == (1, False, "none")
    assert row["max-model-len"] == 8192 + 1024 + 256
    assert row["exp-name"] == "m_8k1k"
    assert expand_jobs({"k": entry([{"tp": 1, "conc-list": [1]}], isl=1024, osl=128)})[0].exp_name == "m_1024_128"


def test_row_order_is_key_seqlen_point_conc() -> None:
    """Rows come out config key → seq-len config → point → conc, like the reference."""
    e = entry([{"tp": 4, "conc-list": [2, 1]}, {"tp": 8, "conc-list": [3]}])
    assert [(j.config_key, j.tp, j.conc) for j in expand_jobs({"b": e, "a": e})] == [
        ("b", 4, 2), ("b", 4, 1), ("b", 8, 3), ("a", 4, 2), ("a", 4, 1), ("a", 8, 3)]


def test_max_conc_below_every_value_uses_max_conc() -> None:
    """A range or list entirely above --max-conc runs once at max-conc itself."""
    entries = {"k": entry([{"tp": 8, "conc-start": 64, "conc-end": 256}, {"tp": 4, "conc-list": [32, 64]}])}
    assert concs(entries, max_conc=16) == [16, 16]
    assert concs(entries, max_conc=100) == [64, 100, 32, 64]


def test_min_conc_raises_start_and_skips_ranges_below() -> None:
    """--min-conc moves a range's start up (then steps ×2 from there); ranges ending below it vanish."""
    entries = {"k": entry([{"tp": 8, "conc-start": 4, "conc-end": 64}, {"tp": 4, "conc-start": 1, "conc-end": 8}])}
    assert concs(entries, min_conc=10) == [10, 20, 40, 64]


def test_max_tp_skips_and_max_ep_clamps() -> None:
    """--max-tp skips points; --max-ep clamps ep and leaves an unset ep at 1."""
    entries = {"k": entry([{"tp": 8, "ep": 8, "conc-list": [4]}, {"tp": 4, "conc-list": [4]}])}
    assert [(j.tp, j.ep) for j in expand_jobs(entries, PlanFilters(max_ep=2))] == [(8, 2), (4, 1)]
    assert [j.tp for j in expand_jobs(entries, PlanFilters(max_tp=4))] == [4]


def test_entry_filters() -> None:
    """precision/framework/runner-type match the entry; model-prefix matches the config key's start."""
    entries = {
        "dsr1-fp8-h200-vllm": entry([{"tp": 8, "conc-list": [1]}]),
        "gptoss-fp4-h100-sglang": entry([{"tp": 8, "conc-list": [2]}], precision="fp4", framework="sglang",
                                        runner="h100"),
    }
    assert concs(entries, precision=("fp4",)) == [2]
    assert concs(entries, framework="vllm") == [1]
    assert concs(entries, runner_type=("h100",)) == [2]
    assert concs(entries, model_prefix=("dsr1",)) == [1]
    assert concs(entries, config_keys=("gptoss-*",)) == [2]
    with pytest.raises(PlanFilterError, match="invalid runner type"):
        expand_jobs(entries, PlanFilters(runner_type=("b200",)))
    with pytest.raises(PlanFilterError, match="matched no config keys"):
        expand_jobs(entries, PlanFilters(config_keys=("nope-*",)))
    with pytest.raises(PlanFilterError, match="not found"):
        expand_jobs(entries, PlanFilters(config_keys=("nope",)))


def test_seq_lens_filter() -> None:
    """--seq-lens keeps only the named shapes."""
    raw = entry([{"tp": 8, "conc-list": [1]}]).model_dump(by_alias=True, exclude_none=True, mode="json")
    raw["scenarios"]["fixed-seq-len"].append({"isl": 8192, "osl": 1024, "search-space": [{"tp": 8, "conc-list": [2]}]})
    entries = {"k": MasterEntry.model_validate(raw)}
    assert concs(entries, seq_lens=("8k1k",)) == [2]
    assert concs(entries, seq_lens=("1k1k", "8k1k")) == [1, 2]


def test_filters_reject_nonsense() -> None:
    """Non-positive limits and min > max are rejected up front (the reference silently emits nothing)."""
    with pytest.raises(ValueError, match="greater than 0"):
        PlanFilters(max_conc=0)
    with pytest.raises(ValueError, match="min_conc"):
        PlanFilters(min_conc=64, max_conc=4)


def test_eval_marks_highest_and_upper_median_across_tps() -> None:
    """8k1k only; concs < 16 ignored; every TP at the highest conc and at concs[len // 2] is marked."""
    e = entry([{"tp": 4, "conc-start": 4, "conc-end": 64}, {"tp": 8, "conc-start": 4, "conc-end": 128}],
              isl=8192, osl=1024)
    jobs = expand_jobs({"k": e})
    marked = sorted((j.tp, j.conc) for j in jobs if j.run_eval)
    # distinct eligible concs: 16, 32, 64, 128 → highest 128, upper median concs[2] = 64
    assert marked == [(4, 64), (8, 64), (8, 128)]
    assert MIN_EVAL_CONC == 16


def test_eval_groups_split_by_dp_attn_and_spec_decoding() -> None:
    """DEP and non-DEP, MTP and non-MTP rows are separate eval groups."""
    e = entry([{"tp": 8, "conc-list": [32, 64]}, {"tp": 8, "ep": 8, "dp-attn": True, "conc-list": [256]},
               {"tp": 8, "spec-decoding": "mtp", "conc-list": [16]}], isl=8192, osl=1024)
    marked = sorted((j.dp_attn, j.spec_decoding, j.conc) for j in expand_jobs({"k": e}) if j.run_eval)
    assert marked == [(False, "mtp", 16), (False, "none", 64), (True, "none", 256)]


def test_no_eval_outside_8k1k_or_below_min_conc() -> None:
    """1k1k rows and groups with only conc < 16 get no eval."""
    jobs = expand_jobs({"a": entry([{"tp": 8, "conc-list": [64]}]),
                        "b": entry([{"tp": 8, "conc-list": [4, 8]}], isl=8192, osl=1024)})
    assert not any(j.run_eval for j in mark_eval(jobs))


def test_multinode_and_agentic_are_counted() -> None:
    """Multinode rows (one per point) and agentic rows (one per conc) are counted, never dropped silently."""
    worker = {"num-worker": 1, "tp": 4, "ep": 4, "dp-attn": True}
    mn = MasterEntry.model_validate({
        "image": "x/y:1", "model": "m", "model-prefix": "m", "runner": "gb200", "precision": "fp4",
        "framework": "dynamo-trt", "multinode": True, "disagg": True,
        "scenarios": {
            "fixed-seq-len": [{"isl": 1024, "osl": 1024, "search-space": [
                {"conc-list": [8, 16], "prefill": worker, "decode": worker},
                {"conc-list": [4], "prefill": worker, "decode": worker}]}],
            "agentic-coding": [{"duration": 300, "search-space": [
                {"conc-list": [1, 2, 4], "prefill": worker, "decode": worker}]}],
        },
    })
    result = expand({"mn": mn})
    assert result.jobs == []
    assert (result.unsupported.multinode_rows, result.unsupported.agentic_rows) == (2, 3)
    assert expand({"mn": mn}, PlanFilters(min_conc=8)).unsupported.multinode_rows == 1
    assert expand({"mn": mn}, PlanFilters(single_node=True)).unsupported.excluded_multinode_keys == 1
