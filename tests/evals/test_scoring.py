"""Filters, exact_match and the aggregation, pinned against rule-derived expectations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from infersweep.evals.data import Gsm8kData
from infersweep.evals.filters import FLEXIBLE_EXTRACT, STRICT_MATCH, RegexFilter
from infersweep.evals.gsm8k import ResponseFileError, read_responses, score_responses
from infersweep.evals.scoring import exact_match, mean, mean_stderr, normalize

from .conftest import final_answer
from .corpus import CORPUS, Case


def test_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 200
    responses = [c.response for c in CORPUS]
    assert any("," in r for r in responses) and any("$" in r for r in responses)
    assert any(r.rstrip().endswith(".") for r in responses) and any("-" in r for r in responses)
    assert any(r.count("####") > 1 for r in responses) and any("####" not in r for r in responses)
    assert sum(c.strict == "[invalid]" for c in CORPUS) > 20


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: repr(c.response[:40]))
def test_filters_and_exact_match(case: Case) -> None:
    assert STRICT_MATCH(case.response) == case.strict
    assert FLEXIBLE_EXTRACT(case.response) == case.flexible
    assert exact_match(case.strict, case.reference) == (1.0 if case.strict_ok else 0.0)
    assert exact_match(case.flexible, case.reference) == (1.0 if case.flexible_ok else 0.0)


def test_filter_handles_non_string_and_all_empty_groups() -> None:
    assert STRICT_MATCH(None) == "[invalid]"
    optional_groups = RegexFilter("t", r"(a)?(b)?")
    assert optional_groups("zzz") == "[invalid]"  # every match is ('', ''): the fallback
    assert RegexFilter("first", r"(\d+)", group_select=0)("1 and 2") == "1"


def test_normalize_removes_in_order_then_lowercases() -> None:
    assert normalize("Work 1,000 $ then\n#### $1,000.") == "1000"
    assert normalize("ABC") == "abc"
    assert normalize("5.\n") == "5\n"  # `\.$` also matches before a final newline
    assert normalize("a #### b #### 7") == "7"  # greedy: up to the last marker


def test_mean_and_stderr_formula() -> None:
    values = [1.0, 0.0, 1.0, 1.0]
    assert mean(values) == 0.75
    # sample stddev (n-1) / sqrt(n)
    expected = math.sqrt(((0.25**2) * 3 + 0.75**2) / 3) / math.sqrt(4)
    assert mean_stderr(values) == pytest.approx(expected, rel=0, abs=1e-15)
    assert mean_stderr([1.0]) is None
    assert mean_stderr([1.0, 1.0]) == 0.0


def test_score_responses_against_the_real_test_split(gsm8k_data: Gsm8kData) -> None:
    rows = []
    for doc_id in range(40):
        gold = final_answer(gsm8k_data.test[doc_id].answer)
        response = f"reasoning...\n#### {gold}" if doc_id % 4 else f"The answer is {gold}"
        rows.append({"doc_id": doc_id, "response": response})
    summary, samples = score_responses(list(reversed(rows)), data=gsm8k_data)
    assert [s.doc_id for s in samples] == list(range(40))
    assert summary.n == 40
    assert summary.strict_match == 30 / 40
    assert summary.flexible_extract == 1.0
    assert summary.stderr_flexible_extract == 0.0
    expected_stderr = math.sqrt(0.75 * 0.25 * 40 / 39) / math.sqrt(40)
    assert summary.stderr_strict_match == pytest.approx(expected_stderr, abs=1e-15)
    assert samples[0].strict_match_answer == "[invalid]" and samples[1].strict_match_correct


def test_score_responses_rejects_bad_rows(gsm8k_data: Gsm8kData) -> None:
    with pytest.raises(ResponseFileError, match="outside the test split"):
        score_responses([{"doc_id": 1319, "response": "x"}], data=gsm8k_data)
    with pytest.raises(ResponseFileError, match="appears twice"):
        score_responses([{"doc_id": 1, "response": "x"}, {"doc_id": 1, "response": "y"}], data=gsm8k_data)
    with pytest.raises(ResponseFileError, match="'doc_id' must be an integer"):
        score_responses([{"doc_id": "3", "response": "x"}], data=gsm8k_data)
    with pytest.raises(ResponseFileError, match="'response' must be a string"):
        score_responses([{"doc_id": 3, "response": None}], data=gsm8k_data)


def test_read_responses_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"doc_id": 0, "response": "x"}\n\n{oops\n')
    with pytest.raises(ResponseFileError, match=r"r\.jsonl:3: not valid JSON"):
        read_responses(path)
