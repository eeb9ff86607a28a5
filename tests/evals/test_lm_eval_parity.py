"""Parity with lm-eval itself (lane: `make test-eval-parity`, which installs lm-eval in .venv-lmeval).

Compares our filters, exact_match, stderr and few-shot sampler with lm-eval's own classes, then runs
`lm_eval` (through `--backend lm-eval`) against a local mock server for 30 docs and checks that its
logged chat messages, request bodies and scores equal what the native backend builds and computes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infersweep.evals import prompt as P
from infersweep.evals.data import Gsm8kData
from infersweep.evals.filters import FLEXIBLE_EXTRACT, STRICT_MATCH
from infersweep.evals.gsm8k import build_requests, run_gsm8k, score_responses
from infersweep.evals.lm_eval_backend import logged_messages, run_lm_eval
from infersweep.evals.scoring import IGNORE_CASE, REGEXES_TO_IGNORE, exact_match, mean, mean_stderr

from .conftest import final_answer
from .corpus import CORPUS
from .mock_chat import MockChatServer

pytestmark = pytest.mark.lm_eval_parity
lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (run `make test-eval-parity`)")

N_DOCS = 30


def lm_eval_filter(pattern: str) -> Callable[[str], str]:
    from lm_eval.filters.extraction import RegexFilter
    from lm_eval.filters.selection import TakeFirstFilter

    regex, take_first = RegexFilter(regex_pattern=pattern, group_select=-1), TakeFirstFilter()

    def apply(response: str) -> str:
        return next(iter(take_first.apply(regex.apply([[response]], [{}]), [{}])))

    return apply


def lm_eval_exact_match(prediction: str, reference: str) -> float:
    from lm_eval.api.metrics import exact_match_hf_evaluate

    return float(
        exact_match_hf_evaluate(
            predictions=[prediction], references=[reference], regexes_to_ignore=list(REGEXES_TO_IGNORE),
            ignore_case=IGNORE_CASE, ignore_punctuation=False,
        )["exact_match"]
    )  # fmt: skip


def test_filters_equal_lm_eval_on_the_corpus(gsm8k_data: Gsm8kData) -> None:
    strict, flexible = lm_eval_filter(STRICT_MATCH.pattern), lm_eval_filter(FLEXIBLE_EXTRACT.pattern)
    references = [c.reference for c in CORPUS] + [d.answer for d in gsm8k_data.test[:25]]
    mismatches = []
    for case in CORPUS:
        ours = (STRICT_MATCH(case.response), FLEXIBLE_EXTRACT(case.response))
        theirs = (strict(case.response), flexible(case.response))
        if ours != theirs:
            mismatches.append((case.response, ours, theirs))
        for extracted in ours:
            for reference in (case.reference, *references[::17]):
                if exact_match(extracted, reference) != lm_eval_exact_match(extracted, reference):
                    mismatches.append((extracted, reference))
    assert len(CORPUS) >= 200
    assert mismatches == []


def test_stderr_and_mean_are_bit_identical() -> None:
    from lm_eval.api.metrics import mean as lm_mean
    from lm_eval.api.metrics import mean_stderr as lm_mean_stderr

    for n, k in [(2, 1), (30, 17), (200, 160), (1319, 1250), (1319, 1319), (7, 0)]:
        values = [1.0 if i % n < k else 0.0 for i in range(n)]
        values = values[::3] + values[1::3] + values[2::3]  # order matters for the float sum
        assert mean(values) == lm_mean(values)
        assert mean_stderr(values) == lm_mean_stderr(values)


def test_fewshot_sampler_equals_lm_eval(gsm8k_data: Gsm8kData) -> None:
    from lm_eval.api.samplers import ContextSampler

    train = [d.as_dict() for d in gsm8k_data.train]
    position = {json.dumps(d, sort_keys=True): i for i, d in enumerate(train)}
    sampler = ContextSampler(train, rnd=None).set_rnd(P.FEWSHOT_SEED)
    theirs = [[position[json.dumps(d, sort_keys=True)] for d in sampler.sample(n=5)] for _ in range(100)]
    assert P.fewshot_indices(100, len(train)) == theirs


def styled_reply(data: Gsm8kData) -> Callable[[dict[str, Any]], str | dict[str, Any]]:
    """Varied answers per doc: right, right with $ and commas, wrong, no marker, reasoning-only."""
    by_question = {P.doc_to_text(doc): (i, final_answer(doc.answer)) for i, doc in enumerate(data.test)}

    def reply(body: dict[str, Any]) -> str | dict[str, Any]:
        doc_id, gold = by_question[body["messages"][-1]["content"]]
        style = doc_id % 5
        if style == 0:
            return f"12 + 30 = 42\n#### {gold}"
        if style == 1:
            return f"That costs ${int(gold):,}.\n#### ${int(gold):,}"
        if style == 2:
            return f"I think it is {int(gold) + 1}."
        if style == 3:
            return {"content": "", "reasoning_content": f"Thinking: 5 * 5 = 25.\n#### {gold}"}
        return f"#### {gold}\nActually 3 more.\n#### {int(gold) + 3}"

    return reply


def test_lm_eval_run_matches_the_native_backend(
    gsm8k_dir: Path, gsm8k_data: Gsm8kData, mock_chat: Callable[..., MockChatServer], tmp_path: Path
) -> None:
    reference_server = mock_chat(reply=styled_reply(gsm8k_data))
    work = tmp_path / "lm_eval"
    theirs = run_lm_eval(
        reference_server.base_url, "served-model", limit=N_DOCS, concurrency=4, data_dir=gsm8k_dir,
        context_len=8192, lm_eval_python=sys.executable, work_dir=work, timeout_s=900,
    )  # fmt: skip

    # (1) lm-eval's chat messages, read from --log_samples `arguments`, equal ours for each doc.
    requests = {doc_id: payload for doc_id, _, payload in build_requests(gsm8k_data, model="served-model", limit=N_DOCS, max_tokens=4096)}
    samples_file = next(work.rglob("samples_gsm8k_*.jsonl"))
    logged = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert {row["doc_id"] for row in logged} == set(range(N_DOCS))
    for row in logged:
        assert logged_messages(row) == requests[row["doc_id"]]["messages"], f"doc {row['doc_id']}"
        assert row["prompt_hash"] == P.prompt_hash(requests[row["doc_id"]]["messages"])

    # The whole request body lm-eval posted equals ours, key for key.
    assert sorted(json.dumps(b, sort_keys=True) for b in reference_server.bodies) == sorted(
        json.dumps(p, sort_keys=True) for p in requests.values()
    )
    assert all(list(b) == list(requests[0]) for b in reference_server.bodies)

    # (2) Scores: lm-eval's numbers equal ours on its own responses, sample by sample.
    ours_summary, ours_samples = score_responses({s.doc_id: s.response for s in theirs.samples}, data=gsm8k_data)
    assert theirs.n == ours_summary.n == N_DOCS
    assert (theirs.strict_match, theirs.flexible_extract) == (ours_summary.strict_match, ours_summary.flexible_extract)
    assert theirs.stderr_strict_match == ours_summary.stderr_strict_match
    assert theirs.stderr_flexible_extract == ours_summary.stderr_flexible_extract
    for mine, ref in zip(ours_samples, theirs.samples, strict=True):
        assert (mine.strict_match_answer, mine.flexible_extract_answer) == (ref.strict_match_answer, ref.flexible_extract_answer)
        assert (mine.strict_match_correct, mine.flexible_extract_correct) == (ref.strict_match_correct, ref.flexible_extract_correct)
    # The reasoning_content patch is active in the lm_eval process (style 3 docs are answered).
    assert all(s.strict_match_correct for s in theirs.samples if s.doc_id % 5 == 3)

    # The native backend against an identical server sends the same bodies and scores the same.
    native_server = mock_chat(reply=styled_reply(gsm8k_data))
    native = run_gsm8k(native_server.base_url, "served-model", limit=N_DOCS, concurrency=4, data=gsm8k_data, context_len=8192)
    assert sorted(json.dumps(b, sort_keys=True) for b in native_server.bodies) == sorted(
        json.dumps(b, sort_keys=True) for b in reference_server.bodies
    )
    assert native.model_dump(include={"n", "strict_match", "flexible_extract", "stderr_strict_match", "stderr_flexible_extract"}) == (
        theirs.model_dump(include={"n", "strict_match", "flexible_extract", "stderr_strict_match", "stderr_flexible_extract"})
    )


@pytest.mark.parametrize("multiturn", [True, False])
def test_message_layouts_equal_lm_eval_primitives(gsm8k_data: Gsm8kData, multiturn: bool) -> None:
    """Both `fewshot_as_multiturn` layouts, assembled with lm-eval's own `build_qa_turn` and collapse."""
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.api.utils import multiturn_to_singleturn

    shots = P.fewshot_indices(10, len(gsm8k_data.train))
    for doc_id in range(10):
        turns = []
        for i in shots[doc_id]:
            shot = gsm8k_data.train[i]
            turns += ConfigurableTask.build_qa_turn(
                None, q=P.doc_to_text(shot), a=P.doc_to_target(shot), tgt_delim=" ", few_delim="\n\n"  # type: ignore[arg-type]
            )
        turns += ConfigurableTask.build_qa_turn(None, q=P.doc_to_text(gsm8k_data.test[doc_id]), tgt_delim=" ", few_delim="")  # type: ignore[arg-type]
        theirs = [m.to_dict() for m in turns] if multiturn else multiturn_to_singleturn(turns)
        ours = P.build_messages(gsm8k_data.test[doc_id], [gsm8k_data.train[i] for i in shots[doc_id]], fewshot_as_multiturn=multiturn)
        assert ours == theirs
