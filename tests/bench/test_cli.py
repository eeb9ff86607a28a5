"""`infersweep bench` end to end against an in-test aiohttp OpenAI mock."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from infersweep.bench.cli import parse_concs, result_path
from infersweep.cli import app

from .conftest import ServerThread, aiohttp_openai_mock


def args(url, tokenizer_dir, out, *extra):
    return ["bench", "--base-url", url, "--model", "m", "--tokenizer", str(tokenizer_dir), "--isl", "16",
            "--osl", "4", "--result-file", str(out), *extra]  # fmt: skip


def test_single_conc_writes_the_given_file(aiohttp_mock, tokenizer_dir, tmp_path):
    out = tmp_path / "r" / "res.json"
    r = CliRunner().invoke(app, args(aiohttp_mock.url, tokenizer_dir, out, "--conc", "2", "--num-prompts", "6",
                                     "--metadata", "run=ci", "--gpus", "2"))  # fmt: skip
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["max_concurrency"] == 2 and res["completed"] == 6 and res["run"] == "ci"
    assert res["infersweep"]["gpus"] == 2 and res["infersweep"]["config"]["request_rate"] == "Infinity"
    assert "ttft  ms" in r.output and not list(out.parent.glob("*.tmp"))


def test_several_concs_one_file_each(aiohttp_mock, tokenizer_dir, tmp_path):
    out = tmp_path / "res.json"
    r = CliRunner().invoke(app, args(aiohttp_mock.url, tokenizer_dir, out, "--conc", "1,2", "--conc", "3",
                                     "--num-warmups", "0"))  # fmt: skip
    assert r.exit_code == 0, r.output
    for c in (1, 2, 3):
        res = json.loads((tmp_path / f"res_conc{c}.json").read_text())
        assert res["max_concurrency"] == c and res["num_prompts"] == 10 * c == res["completed"]
    assert not out.exists()


def test_failed_point_exits_1_but_writes_the_file(tokenizer_dir, tmp_path):
    out = tmp_path / "res.json"
    with ServerThread(aiohttp_openai_mock(short_by=1)) as srv:
        r = CliRunner().invoke(app, args(srv.url, tokenizer_dir, out, "--conc", "1", "--num-prompts", "2"))
    assert r.exit_code == 1
    assert "FAIL: 2 length violations" in r.output
    assert json.loads(out.read_text())["infersweep"]["passed"] is False


def test_bad_input_exits_2(tokenizer_dir, tmp_path):
    r = CliRunner().invoke(app, args("ftp://x", tokenizer_dir, tmp_path / "r.json", "--conc", "1"))
    assert r.exit_code == 2 and "base_url" in r.output
    r = CliRunner().invoke(app, args("http://127.0.0.1:1", tmp_path, tmp_path / "r.json", "--conc", "1"))
    assert r.exit_code == 2 and "tokenizer.json" in r.output


def test_conc_parsing_and_naming(tmp_path):
    assert parse_concs(["4,8", "16", "8"]) == [4, 8, 16]
    with pytest.raises(Exception, match="integer"):
        parse_concs(["x"])
    assert result_path(tmp_path / "a.json", 4, multi=False) == tmp_path / "a.json"
    assert result_path(tmp_path / "a.json", 4, multi=True) == tmp_path / "a_conc4.json"


def test_gpu_telemetry_writes_a_csv_beside_each_result_and_nulls_with_a_reason(aiohttp_mock, tokenizer_dir, tmp_path):
    # The mock has no /metrics: every read fails, so the CSV holds [N/A] rows and energy is null with the reason
    # (never 0 W); the point itself still passes.
    out = tmp_path / "res.json"
    r = CliRunner().invoke(app, args(aiohttp_mock.url, tokenizer_dir, out, "--conc", "1,2", "--num-prompts", "4",
                                     "--gpu-telemetry", "sim", "--telemetry-interval-s", "0.1"))  # fmt: skip
    assert r.exit_code == 0, r.output
    for c in (1, 2):
        res = json.loads((tmp_path / f"res_conc{c}.json").read_text())
        energy = res["infersweep"]["energy"]
        assert energy["joules_per_token"] is None and "invalid_power_sample" in energy["invalid_reasons"]
        assert energy["start_unix"] == res["benchmark_start_time_unix"] and "/metrics failed" in energy["reason"]
        lines = (tmp_path / f"res_conc{c}_gpu_metrics.csv").read_text().splitlines()
        assert lines[0].startswith("timestamp,index,power.draw [W],") and len(lines) > 1
        assert all(",," in row and "[N/A]" in row for row in lines[1:])  # no GPU index, no power
    assert "energy: n/a (" in r.output and "_gpu_metrics.csv" in r.output


def test_gpu_telemetry_options_are_validated(tokenizer_dir, tmp_path):
    out = tmp_path / "r.json"
    def text(r) -> str:  # the error box may wrap lines
        return " ".join(r.output.replace("│", " ").split())

    r = CliRunner().invoke(app, args("http://127.0.0.1:1", tokenizer_dir, out, "--conc", "1", "--gpu-telemetry", "dcgm"))
    assert r.exit_code == 2 and "none, sim, nvidia-smi" in text(r)
    r = CliRunner().invoke(app, args("http://127.0.0.1:1", tokenizer_dir, out, "--conc", "1", "--gpu-telemetry", "sim",
                                     "--telemetry-interval-s", "3"))  # fmt: skip
    assert r.exit_code == 2 and "InferenceX rejects gaps over 3 s" in text(r) and not out.exists()
