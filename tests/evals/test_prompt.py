"""The request lm-eval builds for gsm8k: prompt text, few-shot choice, message layout, payload."""

from __future__ import annotations

import json

import pytest

from infersweep.evals import prompt as P
from infersweep.evals.data import Gsm8kData, Gsm8kDoc
from infersweep.evals.gsm8k import build_requests

DOC = Gsm8kDoc(question="What is 2+3?", answer="2+3=<<2+3=5>>5\n#### 5")
SHOTS = [Gsm8kDoc(question=f"Q{i}?", answer=f"step {i}\n#### {i}") for i in range(5)]


def test_doc_to_text_is_exact() -> None:
    assert P.doc_to_text(DOC) == (
        "Question: What is 2+3?\n"
        "End your response with the answer on the last line, formatted as: #### [number]\n"
        "Answer:"
    )
    assert P.doc_to_target(DOC) == "2+3=<<2+3=5>>5\n#### 5"


def test_doc_to_text_keeps_braces_and_newlines_verbatim() -> None:
    doc = Gsm8kDoc(question="A {x} and\n  {{y}} $5?", answer="#### 1")
    assert P.doc_to_text(doc).startswith("Question: A {x} and\n  {{y}} $5?\nEnd your response")


def test_multiturn_messages_alternate_user_and_assistant() -> None:
    messages = P.build_messages(DOC, SHOTS)
    assert len(messages) == 11
    assert [m["role"] for m in messages] == ["user", "assistant"] * 5 + ["user"]
    assert messages[0] == {"role": "user", "content": P.doc_to_text(SHOTS[0])}
    assert messages[1] == {"role": "assistant", "content": "step 0\n#### 0"}
    assert messages[-1] == {"role": "user", "content": P.doc_to_text(DOC)}
    assert all(set(m) == {"role", "content"} for m in messages)


def test_single_turn_joins_with_lm_eval_delimiters() -> None:
    messages = P.build_messages(DOC, SHOTS[:2], fewshot_as_multiturn=False)
    assert messages == [
        {
            "role": "user",
            "content": P.doc_to_text(SHOTS[0]) + " step 0\n#### 0\n\n"
            + P.doc_to_text(SHOTS[1]) + " step 1\n#### 1\n\n"
            + P.doc_to_text(DOC),
        }
    ]


def test_fewshot_sampler_replays_a_single_seeded_rng_in_doc_order() -> None:
    import random

    rnd = random.Random(1234)
    expected = [rnd.sample(range(7473), 5) for _ in range(4)]
    assert P.fewshot_indices(4, 7473) == expected
    # --limit does not change which shots a doc gets: doc i always sees the i-th draw.
    assert P.fewshot_indices(2, 7473) == expected[:2]
    assert all(len(set(ids)) == 5 for ids in expected)


def test_fewshot_rejects_a_pool_smaller_than_k() -> None:
    with pytest.raises(ValueError, match="pool of 3"):
        P.fewshot_indices(1, 3)


# lm-eval 0.4.13 drew these train indices for test docs 0..2 (seed 1234), checked by the parity lane.
PINNED_SHOTS = [[6374, 3610, 957, 61, 742], [7462, 6610, 4769, 286, 5501], [5677, 687, 806, 6279, 2905]]


def test_fewshot_indices_pinned_for_the_real_train_split() -> None:
    assert P.fewshot_indices(3, 7473) == PINNED_SHOTS


def test_requests_for_the_real_split(gsm8k_data: Gsm8kData) -> None:
    requests = build_requests(gsm8k_data, model="m", limit=3, max_tokens=12288)
    assert [r[0] for r in requests] == [0, 1, 2]
    _, shot_ids, payload = requests[0]
    assert shot_ids == PINNED_SHOTS[0]
    messages = payload["messages"]
    assert messages[0]["content"] == P.doc_to_text(gsm8k_data.train[PINNED_SHOTS[0][0]])
    assert messages[1]["content"] == gsm8k_data.train[PINNED_SHOTS[0][0]].answer
    assert messages[-1]["content"].startswith("Question: Janet\u2019s ducks lay 16 eggs per day.")


def test_payload_matches_lm_eval_local_chat_completions() -> None:
    messages = P.build_messages(DOC, SHOTS)
    payload = P.build_payload(messages, model="served", max_tokens=12288)
    assert list(payload) == ["messages", "model", "max_tokens", "temperature", "stop", "seed", "top_p"]
    assert payload["stop"] == ["</s>", "<|im_end|>"]
    assert (payload["temperature"], payload["top_p"], payload["seed"]) == (0, 1, 1234)


def test_stop_sequences_add_eos_and_keep_four() -> None:
    assert P.stop_sequences(["a", "b"], eos="</s>") == ["a", "b", "</s>"]
    assert P.stop_sequences(["a", "b", "c", "d", "e"]) == ["a", "b", "c", "d"]
    assert P.stop_sequences(["</s>"]) == ["</s>"]


@pytest.mark.parametrize(
    ("context", "expected"),
    [(16384, 12288), (20480, 16384), (131072, 16384), (8192, 4096), (4097, 1), (4096, 2048), (2048, 1024), (1, 0)],
)
def test_max_tokens_budget(context: int, expected: int) -> None:
    assert P.max_tokens_for_context(context) == expected


def test_prompt_hash_is_sha256_of_lm_eval_chat_json() -> None:
    import hashlib

    messages = [{"role": "user", "content": "Janet\u2019s"}]
    expected = hashlib.sha256(json.dumps(messages, ensure_ascii=False).encode()).hexdigest()
    assert P.prompt_hash(messages) == expected
