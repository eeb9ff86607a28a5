"""GSM8K answer key: lets the simulator answer a known fraction of questions correctly.

Rule (exact, documented in docs/simulator.md):
- The question of a prompt is the text after its LAST ``"Question: "`` up to the next line that starts
  with ``"End your response"`` or ``"Answer:"`` (or the end of the text), stripped.
- Over a key of n distinct questions, the correct ones are the first ``round(P·n)`` when the questions
  are ranked by ``sha256(f"{seed}:{question}")`` (Python's `round`, i.e. half to even). So a run over the
  whole key scores exactly ``round(P·n)/n``; any subset scores the count of its members in that set.
- A correct reply ends ``#### <answer>``; a wrong one ends ``#### <answer + d>`` with d in 1..9 taken
  from the same hash (non-integer answers get ``<answer>1``), so it never equals the gold answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

_QUESTION = "Question: "
_ENDERS = ("End your response", "Answer:")


class AnswerKeyError(ValueError):
    """The answer-key file is missing or malformed."""


def extract_question(prompt: str) -> str | None:
    """The last "Question:" block of a prompt (see the module docstring), or None if there is none."""
    idx = prompt.rfind(_QUESTION)
    if idx < 0:
        return None
    rest = prompt[idx + len(_QUESTION):]
    pos = 0
    while True:
        nl = rest.find("\n", pos)
        if nl < 0:
            return rest.strip()
        if rest.startswith(_ENDERS, nl + 1):
            return rest[:nl].strip()
        pos = nl + 1


def _rank_hash(question: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}:{question}".encode()).digest()


def correct_questions(questions: Iterable[str], accuracy: float, seed: int = 0) -> frozenset[str]:
    """The questions answered correctly: the first round(P·n) distinct questions by hash rank."""
    if not 0.0 <= accuracy <= 1.0:
        raise ValueError(f"accuracy must be in [0, 1], got {accuracy}")
    distinct = sorted({q.strip() for q in questions}, key=lambda q: _rank_hash(q, seed))
    return frozenset(distinct[: round(accuracy * len(distinct))])


def is_correct(question: str, accuracy: float, seed: int = 0, *, questions: Iterable[str]) -> bool:
    """Whether the sim answers `question` correctly, given every question of the key (`questions`)."""
    return question.strip() in correct_questions(questions, accuracy, seed)


def wrong_answer(answer: str, question: str, seed: int = 0) -> str:
    """A deterministic wrong final answer (never equal to `answer`)."""
    delta = 1 + _rank_hash(question, seed)[0] % 9
    try:
        return str(int(answer.replace(",", "").strip()) + delta)
    except ValueError:
        return answer.strip() + "1"


@dataclass(frozen=True)
class AnswerKey:
    """Question → gold answer, plus which questions the sim gets right at accuracy P."""

    answers: dict[str, str]
    accuracy: float
    seed: int
    correct: frozenset[str]

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, str]], accuracy: float, seed: int = 0) -> AnswerKey:
        answers: dict[str, str] = {}
        for row in rows:
            answers[str(row["question"]).strip()] = str(row["answer"]).strip()
        return cls(answers=answers, accuracy=accuracy, seed=seed,
                   correct=correct_questions(answers, accuracy, seed))

    @classmethod
    def from_jsonl(cls, path: str | Path, accuracy: float, seed: int = 0) -> AnswerKey:
        """Load `{"question": str, "answer": str}` rows; one clear error naming the file and line."""
        p = Path(path)
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise AnswerKeyError(f"{p}: cannot read the answer key ({exc.strerror})") from exc
        rows = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise AnswerKeyError(f"{p}:{n}: not JSON ({exc})") from exc
            if not isinstance(row, dict) or not isinstance(row.get("question"), str) or "answer" not in row:
                raise AnswerKeyError(f'{p}:{n}: each line needs {{"question": str, "answer": str}}')
            rows.append(row)
        if not rows:
            raise AnswerKeyError(f"{p}: the answer key is empty")
        return cls.from_rows(rows, accuracy, seed)

    def reply(self, prompt: str) -> str | None:
        """The reply text for a prompt whose last question is in the key, else None."""
        q = extract_question(prompt)
        if q is None or q not in self.answers:
            return None
        gold = self.answers[q]
        final = gold if q in self.correct else wrong_answer(gold, q, self.seed)
        return f"Let me work through this step by step.\nThe answer is {final}.\n#### {final}"
