"""Loading points from result files: InferenceX aggregates, infersweep spools, ReportPoint JSON."""

from __future__ import annotations

import json

import pytest

from infersweep.report.json_source import ResultFileError, dump_points, load_dir, load_file
from infersweep.report.sample import sample_points

# Field names and units as written by InferenceX's utils/process_result.py (latencies in seconds).
INFERENCEX_AGG = {
    "hw": "h200", "conc": 64, "image": "vllm/vllm-openai:v0.11.0", "model": "deepseek-ai/DeepSeek-R1-0528",
    "infmax_model_prefix": "dsr1", "framework": "vllm", "precision": "fp8", "spec_decoding": "none",
    "disagg": False, "isl": 1024, "osl": 1024, "tp": 8, "pp": 1, "ep": 1, "dp_attention": "false",
    "tput_per_gpu": 1234.5, "output_tput_per_gpu": 617.2, "input_tput_per_gpu": 617.3,
    "median_ttft": 0.25, "p99_ttft": 1.5, "median_tpot": 0.02, "median_intvty": 50.0, "median_e2el": 20.7,
    "recipe_fingerprint": "ab" * 32,
}


def test_inferencex_aggregate_converts_seconds_and_rebuilds_the_config_key(tmp_path):
    f = tmp_path / "agg_bmk.json"
    f.write_text(json.dumps([INFERENCEX_AGG]))
    (p,) = load_file(f)
    assert p.config_key == "dsr1-fp8-h200-vllm" and p.runner == "h200" and p.tp == 8
    assert p.median_ttft_ms == pytest.approx(250.0) and p.median_e2el_ms == pytest.approx(20700.0)
    assert p.tput_per_gpu == 1234.5 and p.spec_decoding is None and not p.dp_attn
    assert p.engine == "inferencex" and not p.simulated and p.ok


def test_spool_records_take_topology_from_their_group(tmp_path):
    lines = [
        {"kind": "run", "data": {"dag_id": "k", "run_id": "r", "started_at": "2026-11-27T02:00:00+00:00"}},
        {"kind": "group", "data": {"dag_id": "k", "run_id": "r", "group_id": "g1", "config_key": "k",
                                    "model": "m", "runner": "h200", "framework": "vllm", "precision": "fp8",
                                    "tp": 4, "ep": 1, "engine": "sim", "image": "img"}},
        {"kind": "benchmark", "data": {"dag_id": "k", "run_id": "r", "group_id": "g1", "isl": 1024, "osl": 1024,
                                        "conc": 8, "status": "ok", "tput_per_gpu": 99.0, "median_intvty": 30.0}},
        {"kind": "benchmark", "data": {"dag_id": "k", "run_id": "r", "group_id": "g1", "isl": 1024, "osl": 1024,
                                        "conc": 16, "status": "failed", "failure_kind": "server_crash"}},
        {"kind": "attempt", "data": {}},
    ]
    f = tmp_path / "spool.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines))
    points = load_file(f)
    assert [(p.conc, p.status, p.tp, p.engine, p.config_key) for p in points] == [
        (8, "ok", 4, "sim", "k"), (16, "failed", 4, "sim", "k")]
    assert points[0].run_started_at is not None


def test_report_points_round_trip(tmp_path):
    points = sample_points(seq_lens=((1024, 1024),))
    dump_points(points, tmp_path / "a.json")
    assert load_dir(tmp_path) == points


def test_bad_files_fail_with_the_file_and_record_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"conc": 4}]))
    with pytest.raises(ResultFileError, match=r"bad\.json: record \[0\]"):
        load_file(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    with pytest.raises(ResultFileError, match="not valid JSON"):
        load_file(broken)
    with pytest.raises(ResultFileError, match="not a directory"):
        load_dir(tmp_path / "missing")
