"""`infersweep eval gsm8k` and `infersweep eval score gsm8k`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.evals.data import Gsm8kData

from .conftest import final_answer
from .mock_chat import MockChatServer
from .test_run import answering

runner = CliRunner()


def test_score_prints_summary_and_writes_per_sample(gsm8k_dir: Path, gsm8k_data: Gsm8kData, tmp_path: Path) -> None:
    responses = tmp_path / "responses.jsonl"
    rows = [{"doc_id": i, "response": f"#### {final_answer(gsm8k_data.test[i].answer)}"} for i in range(10)]
    rows[3]["response"] = "no idea"
    responses.write_text("".join(json.dumps(r) + "\n" for r in rows))
    per_sample = tmp_path / "per.jsonl"
    result = runner.invoke(
        app, ["eval", "score", "gsm8k", "--responses", str(responses), "--data-dir", str(gsm8k_dir), "--per-sample", str(per_sample)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert set(summary) >= {"strict_match", "flexible_extract", "n", "stderr_strict_match", "stderr_flexible_extract"}
    assert (summary["n"], summary["strict_match"], summary["flexible_extract"]) == (10, 0.9, 0.9)
    per = [json.loads(line) for line in per_sample.read_text().splitlines()]
    assert per[3]["strict_match_answer"] == "[invalid]" and per[3]["strict_match_correct"] is False
    assert per[0]["flexible_extract_answer"] == "18" and per[0]["target"] == "18"


def test_score_rejects_a_bad_file_with_one_clear_error(gsm8k_dir: Path, tmp_path: Path) -> None:
    responses = tmp_path / "responses.jsonl"
    responses.write_text('{"doc_id": 99999, "response": "x"}\n')
    result = runner.invoke(app, ["eval", "score", "gsm8k", "--responses", str(responses), "--data-dir", str(gsm8k_dir)])
    assert result.exit_code == 1
    assert "doc_id 99999 is outside the test split" in result.output


def test_eval_gsm8k_passes_and_fails_the_gate(
    gsm8k_dir: Path, gsm8k_data: Gsm8kData, mock_chat: Callable[..., MockChatServer], tmp_path: Path
) -> None:
    server = mock_chat(reply=answering(gsm8k_data, lambda i: i not in (0, 1)))
    args = ["eval", "gsm8k", "--base-url", server.base_url, "--model", "m", "--limit", "20", "--concurrency", "8",
            "--data-dir", str(gsm8k_dir), "--out", str(tmp_path / "a.jsonl")]  # fmt: skip
    passed = runner.invoke(app, args)
    assert passed.exit_code == 0, passed.output
    assert json.loads(passed.stdout)["strict_match"] == 0.9
    failed = runner.invoke(app, [*args, "--model-prefix", "glm5"])
    assert failed.exit_code == 3
    assert "accuracy_below_threshold" in failed.output
    assert (tmp_path / "a.summary.json").exists() and len((tmp_path / "a.jsonl").read_text().splitlines()) == 20


def test_eval_gsm8k_reports_request_failures(gsm8k_dir: Path, mock_chat: Callable[..., MockChatServer], tmp_path: Path) -> None:
    server = mock_chat(fail_first=10, fail_status=404)
    result = runner.invoke(app, ["eval", "gsm8k", "--base-url", server.base_url, "--model", "m", "--limit", "1",
                                 "--data-dir", str(gsm8k_dir), "--out", str(tmp_path / "x.jsonl")])  # fmt: skip
    assert result.exit_code == 1
    assert "HTTP 404" in result.output


def test_lm_eval_backend_is_wired(gsm8k_dir: Path, tmp_path: Path) -> None:
    import importlib.util
    import sys

    base = ["eval", "gsm8k", "--base-url", "http://127.0.0.1:9", "--model", "m", "--limit", "1",
            "--data-dir", str(gsm8k_dir), "--out", str(tmp_path / "x.jsonl"), "--backend", "lm-eval"]  # fmt: skip
    single = runner.invoke(app, [*base, "--single-turn"])
    assert single.exit_code == 1 and "only supported by the native backend" in single.output
    if importlib.util.find_spec("lm_eval") is not None:
        return  # the parity lane runs the real tool end to end
    missing = runner.invoke(app, [*base, "--lm-eval-python", sys.executable])
    assert missing.exit_code == 1 and "No module named lm_eval" in missing.output
    assert not (tmp_path / "x.jsonl").exists()
