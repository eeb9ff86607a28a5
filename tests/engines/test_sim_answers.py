"""The answer key: question extraction and the exact-count rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infersweep.engines.sim.answers import (
    AnswerKey,
    AnswerKeyError,
    correct_questions,
    extract_question,
    is_correct,
    wrong_answer,
)


def test_extract_question_takes_the_last_block() -> None:
    prompt = ("Question: What is 1+1?\nAnswer: 2\n\n"
              "Question: Janet has 3 ducks.\nHow many legs?\nAnswer:")
    assert extract_question(prompt) == "Janet has 3 ducks.\nHow many legs?"
    assert extract_question("Question:  Why?  \nEnd your response with 'The answer is'") == "Why?"
    assert extract_question("Question: no terminator at all ") == "no terminator at all"
    assert extract_question("Solve 2+2") is None
    # "Answer:" only ends the block at the start of a line.
    assert extract_question("Question: Is Answer: a word?\nAnswer:") == "Is Answer: a word?"


@pytest.mark.parametrize("p", [0.0, 0.1, 0.33, 0.5, 0.9, 1.0])
def test_the_correct_count_is_exactly_round_p_n(p: float) -> None:
    questions = [f"question number {i}" for i in range(97)]
    correct = correct_questions(questions, p, seed=3)
    assert len(correct) == round(p * 97)
    assert sum(is_correct(q, p, 3, questions=questions) for q in questions) == round(p * 97)


def test_the_rule_is_stable_and_seeded() -> None:
    qs = [f"q{i}" for i in range(50)]
    assert correct_questions(qs, 0.5) == correct_questions(list(reversed(qs)), 0.5)
    assert correct_questions(qs, 0.5, seed=1) != correct_questions(qs, 0.5, seed=2)
    assert correct_questions(qs, 0.3) <= correct_questions(qs, 0.6)  # monotone in P


def test_wrong_answers_never_match() -> None:
    for i in range(200):
        assert wrong_answer("18", f"q{i}") != "18"
    assert wrong_answer("1,000", "x") != "1000"
    assert wrong_answer("3.5", "x") == "3.51"


def test_answer_key_replies_end_with_the_final_number(tmp_path: Path) -> None:
    rows = [{"question": f"How many apples in box {i}?", "answer": str(i * 7)} for i in range(20)]
    f = tmp_path / "key.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    key = AnswerKey.from_jsonl(f, accuracy=0.25, seed=0)
    right = 0
    for r in rows:
        reply = key.reply(f"Question: {r['question']}\nAnswer:")
        assert reply is not None
        final = reply.rsplit("#### ", 1)[1]
        right += final == r["answer"]
    assert right == round(0.25 * 20)
    assert key.reply("Question: unknown\nAnswer:") is None


def test_bad_answer_key_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"question": "a", "answer": "1"}\nnot json\n')
    with pytest.raises(AnswerKeyError, match=r"bad.jsonl:2"):
        AnswerKey.from_jsonl(f, 1.0)
    with pytest.raises(AnswerKeyError, match="cannot read"):
        AnswerKey.from_jsonl(tmp_path / "missing.jsonl", 1.0)


def test_gsm8k_key_exact_score(gsm8k_dir: Path) -> None:
    rows = [json.loads(line) for line in (gsm8k_dir / "test.jsonl").read_text().splitlines()[:200]]
    key = AnswerKey.from_rows(
        [{"question": r["question"], "answer": r["answer"].rsplit("#### ", 1)[1]} for r in rows], 0.8)
    assert len(key.correct) == round(0.8 * len(key.answers))
