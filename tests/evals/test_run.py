"""run_gsm8k against a local mock chat server: requests, scores, samples, retries, failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infersweep.evals import prompt as P
from infersweep.evals.client import EvalRequestError, RetryPolicy, chat_completions_url
from infersweep.evals.data import Gsm8kData
from infersweep.evals.gsm8k import build_requests, run_gsm8k
from infersweep.evals.results import summary_path

from .conftest import final_answer
from .mock_chat import MockChatServer

FAST = RetryPolicy(max_retries=5, min_wait_s=0.0, multiplier=0.0)


def answering(data: Gsm8kData, right: Callable[[int], bool]) -> Callable[[dict[str, Any]], str]:
    """A reply function: the gold answer for docs where `right(doc_id)`, else gold + 1."""
    by_question = {P.doc_to_text(doc): (i, final_answer(doc.answer)) for i, doc in enumerate(data.test)}

    def reply(body: dict[str, Any]) -> str:
        doc_id, gold = by_question[body["messages"][-1]["content"]]
        value = gold if right(doc_id) else str(int(gold) + 1)
        return f"Step one gives 12 and 30.\nThe answer is {value}.\n#### {value}"

    return reply


def test_run_scores_and_keeps_every_sample(
    gsm8k_data: Gsm8kData, mock_chat: Callable[..., MockChatServer], tmp_path: Path
) -> None:
    server = mock_chat(reply=answering(gsm8k_data, lambda i: i % 5 != 0), delay_s=0.01)
    out = tmp_path / "gsm8k.jsonl"
    result = run_gsm8k(
        server.base_url, "served-model", limit=30, concurrency=4, data=gsm8k_data, context_len=8192,
        out=out, model_prefix="dsr1", retry_policy=FAST,
    )  # fmt: skip
    assert result.n == 30
    assert result.strict_match == result.flexible_extract == 24 / 30
    assert result.stderr_strict_match is not None and result.stderr_strict_match > 0
    assert (result.threshold, result.threshold_source) == (0.91, "models.dsr1")
    assert not result.passed and result.failure_class == "accuracy_below_threshold"
    assert result.max_tokens == 4096 and result.retries == 0 and result.concurrency == 4

    # The server saw exactly the payloads lm-eval would send, bounded by the concurrency.
    expected = {json.dumps(p, sort_keys=True) for _, _, p in build_requests(gsm8k_data, model="served-model", limit=30, max_tokens=4096)}
    assert {json.dumps(b, sort_keys=True) for b in server.bodies} == expected
    assert 1 <= server.peak_in_flight <= 4

    sample = result.samples[5]
    assert sample.doc_id == 5 and not sample.strict_match_correct and not sample.flexible_extract_correct
    assert sample.fewshot_ids == P.fewshot_indices(6, len(gsm8k_data.train))[5]
    assert sample.prompt_hash == P.prompt_hash(build_requests(gsm8k_data, model="m", limit=6, max_tokens=1)[5][2]["messages"])
    assert sample.latency_s is not None and sample.latency_s > 0 and sample.attempts == 1
    assert sample.finish_reason == "stop"

    lines = out.read_text().splitlines()
    assert len(lines) == 30 and json.loads(lines[0])["doc_id"] == 0
    summary = json.loads(summary_path(out).read_text())
    assert summary["strict_match"] == 0.8 and "samples" not in summary


def test_transient_errors_are_retried_and_counted(gsm8k_data: Gsm8kData, mock_chat: Callable[..., MockChatServer]) -> None:
    server = mock_chat(reply=answering(gsm8k_data, lambda i: True), fail_first=3, fail_status=503)
    result = run_gsm8k(server.base_url, "m", limit=6, concurrency=1, data=gsm8k_data, retry_policy=FAST)
    assert result.retries == 3
    assert result.n == 6 and result.strict_match == 1.0 and result.passed
    assert sum(s.attempts or 0 for s in result.samples) == 6 + 3
    assert len(server.bodies) == 9


def test_retry_budget_is_bounded(gsm8k_data: Gsm8kData, mock_chat: Callable[..., MockChatServer], tmp_path: Path) -> None:
    server = mock_chat(fail_first=100, fail_status=429)
    policy = RetryPolicy(max_retries=2, min_wait_s=0.0, multiplier=0.0)
    out = tmp_path / "never.jsonl"
    with pytest.raises(EvalRequestError, match="HTTP 429") as info:
        run_gsm8k(server.base_url, "m", limit=1, concurrency=1, data=gsm8k_data, retry_policy=policy, out=out)
    assert info.value.attempts == 3 and info.value.transient
    assert len(server.bodies) == 3
    assert not out.exists()  # nothing half-written


def test_client_errors_are_permanent(gsm8k_data: Gsm8kData, mock_chat: Callable[..., MockChatServer]) -> None:
    server = mock_chat(fail_first=100, fail_status=400)
    with pytest.raises(EvalRequestError, match=r"gsm8k doc 0: .*HTTP 400") as info:
        run_gsm8k(server.base_url, "m", limit=1, concurrency=1, data=gsm8k_data, retry_policy=FAST)
    assert info.value.attempts == 1 and not info.value.transient
    assert len(server.bodies) == 1


def test_connection_refused_is_transient(gsm8k_data: Gsm8kData, mock_chat: Callable[..., MockChatServer]) -> None:
    server = mock_chat()
    url = server.base_url
    server.stop()
    policy = RetryPolicy(max_retries=1, min_wait_s=0.0, multiplier=0.0)
    with pytest.raises(EvalRequestError, match="failed: Client") as info:
        run_gsm8k(url, "m", limit=1, concurrency=1, data=gsm8k_data, retry_policy=policy)
    assert info.value.transient and info.value.attempts == 2


def test_reasoning_content_is_used_when_content_is_empty(
    gsm8k_data: Gsm8kData, mock_chat: Callable[..., MockChatServer]
) -> None:
    server = mock_chat(reply=answering(gsm8k_data, lambda i: True), reasoning_only=True)
    result = run_gsm8k(server.base_url, "m", limit=3, concurrency=2, data=gsm8k_data, retry_policy=FAST)
    assert result.strict_match == 1.0
    assert all(s.used_reasoning_content for s in result.samples)


def test_single_turn_option_sends_one_user_message(gsm8k_data: Gsm8kData, mock_chat: Callable[..., MockChatServer]) -> None:
    server = mock_chat()
    run_gsm8k(server.base_url, "m", limit=2, concurrency=1, data=gsm8k_data, fewshot_as_multiturn=False, retry_policy=FAST)
    assert all(len(b["messages"]) == 1 and b["messages"][0]["role"] == "user" for b in server.bodies)
    assert all(b["messages"][0]["content"].count("Question: ") == 6 for b in server.bodies)


@pytest.mark.parametrize(
    ("base", "url"),
    [
        ("http://h:1", "http://h:1/v1/chat/completions"),
        ("http://h:1/", "http://h:1/v1/chat/completions"),
        ("http://h:1/v1", "http://h:1/v1/chat/completions"),
        ("http://h:1/v1/chat/completions", "http://h:1/v1/chat/completions"),
    ],
)
def test_chat_completions_url(base: str, url: str) -> None:
    assert chat_completions_url(base) == url


def test_backoff_follows_lm_eval() -> None:
    policy = RetryPolicy()
    assert [policy.wait_s(n) for n in range(1, 7)] == [1.0, 1.0, 2.0, 4.0, 8.0, 10.0]


def test_result_maps_onto_the_store_vocabulary(gsm8k_data: Gsm8kData, mock_chat: Callable[..., MockChatServer]) -> None:
    server = mock_chat(reply=answering(gsm8k_data, lambda i: i != 1))
    result = run_gsm8k(server.base_url, "m", limit=3, concurrency=2, data=gsm8k_data, retry_policy=FAST)
    record = result.store_record()
    assert (record["n"], record["strict"], record["flexible"], record["threshold"], record["passed"]) == (
        3, 2 / 3, 2 / 3, 0.90, False
    )
    assert record["strict_stderr"] == result.stderr_strict_match
    assert record["metrics"]["failure_class"] == "accuracy_below_threshold" and record["metrics"]["retries"] == 0
    rows = result.store_samples()
    assert rows[1]["doc_id"] == 1 and rows[1]["strict_correct"] is False and rows[1]["flexible_answer"] == rows[1]["strict_answer"]
    assert {"prompt_hash", "fewshot_ids", "latency_s", "target", "response"} <= set(rows[0])
    assert "strict_match_answer" not in rows[0]
