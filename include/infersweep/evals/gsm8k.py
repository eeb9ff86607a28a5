"""The public GSM8K API for the DAG and the CLI: `run_gsm8k` and `score_responses`.

`run_gsm8k` sends the 5-shot chat prompts of the test split (or its first `limit` docs) to a running
OpenAI-compatible server with bounded concurrency, scores the answers with lm-eval's two filters and
exact_match, applies the model's accuracy floor and returns an `EvalResult` holding every sample.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from infersweep.evals import prompt as P
from infersweep.evals.client import (
    MAX_RETRIES,
    REQUEST_TIMEOUT_S,
    ChatClient,
    ChatReply,
    EvalRequestError,
    RetryPolicy,
)
from infersweep.evals.data import Gsm8kData, Gsm8kDoc, load_gsm8k, read_jsonl_objects
from infersweep.evals.filters import FLEXIBLE_EXTRACT, STRICT_MATCH
from infersweep.evals.models import TASK_GSM8K, EvalResult, EvalSample, ScoreSummary
from infersweep.evals.results import finish
from infersweep.evals.scoring import exact_match, mean, mean_stderr, normalize
from infersweep.evals.thresholds import Thresholds, load_thresholds
from infersweep.faults.errors import InfersweepError

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 64  # InferenceX's EVAL_CONCURRENT_REQUESTS fallback
DEFAULT_CONTEXT_LEN = 16384  # InferenceX's EVAL_MAX_MODEL_LEN fallback


class ResponseFileError(InfersweepError, ValueError):
    """A responses jsonl row is malformed or names a doc outside the test split."""

    kind = "config_error"
    transient = False


def score_sample(doc_id: int, response: str, doc: Gsm8kDoc, **extra: object) -> EvalSample:
    """Extract both answers from one response and score them against the doc's reference."""
    target = P.doc_to_target(doc)
    strict = STRICT_MATCH(response)
    flexible = FLEXIBLE_EXTRACT(response)
    return EvalSample(
        doc_id=doc_id,
        response=response,
        strict_match_answer=strict,
        flexible_extract_answer=flexible,
        strict_match_correct=exact_match(strict, target) == 1.0,
        flexible_extract_correct=exact_match(flexible, target) == 1.0,
        target=normalize(target),
        **extra,  # type: ignore[arg-type]
    )


def summarize(samples: Sequence[EvalSample]) -> ScoreSummary:
    """Accuracy and stderr of both filters, aggregated in doc-id order like lm-eval."""
    if not samples:
        raise ValueError("cannot score an empty set of samples")
    ordered = sorted(samples, key=lambda s: s.doc_id)
    strict = [1.0 if s.strict_match_correct else 0.0 for s in ordered]
    flexible = [1.0 if s.flexible_extract_correct else 0.0 for s in ordered]
    return ScoreSummary(
        task=TASK_GSM8K,
        n=len(ordered),
        strict_match=mean(strict),
        flexible_extract=mean(flexible),
        stderr_strict_match=mean_stderr(strict),
        stderr_flexible_extract=mean_stderr(flexible),
    )


def score_responses(
    responses: Iterable[Mapping[str, object]] | Mapping[int, str],
    *,
    data: Gsm8kData | None = None,
    data_dir: str | Path | None = None,
    where: str = "responses",
) -> tuple[ScoreSummary, list[EvalSample]]:
    """Score `{"doc_id": int, "response": str}` rows (or a doc_id → response mapping).

    doc_id is the 0-based index in the test split; the reference answer comes from that split.
    Returns the summary and the per-row samples, sorted by doc_id.
    """
    dataset = data or load_gsm8k(data_dir)
    rows: Iterable[Mapping[str, object]]
    if isinstance(responses, Mapping):
        rows = [{"doc_id": k, "response": v} for k, v in responses.items()]
    else:
        rows = responses
    samples: dict[int, EvalSample] = {}
    for index, row in enumerate(rows, start=1):
        doc_id, response = _validate_row(row, f"{where} row {index}", len(dataset.test))
        if doc_id in samples:
            raise ResponseFileError(f"{where} row {index}: doc_id {doc_id} appears twice; keep one response per doc")
        samples[doc_id] = score_sample(doc_id, response, dataset.test[doc_id])
    ordered = [samples[k] for k in sorted(samples)]
    return summarize(ordered), ordered


def read_responses(path: str | Path) -> list[dict[str, object]]:
    """Read a responses jsonl file (one `{"doc_id", "response"}` object per line)."""
    return [row for _, row in read_jsonl_objects(Path(path), ResponseFileError)]


def _validate_row(row: Mapping[str, object], where: str, n_test: int) -> tuple[int, str]:
    doc_id, response = row.get("doc_id"), row.get("response")
    if isinstance(doc_id, bool) or not isinstance(doc_id, int):
        raise ResponseFileError(f"{where}: 'doc_id' must be an integer (0-based test-split index), got {doc_id!r}")
    if not 0 <= doc_id < n_test:
        raise ResponseFileError(f"{where}: doc_id {doc_id} is outside the test split (0..{n_test - 1})")
    if not isinstance(response, str):
        raise ResponseFileError(f"{where}: 'response' must be a string, got {type(response).__name__}")
    return doc_id, response


def build_requests(
    data: Gsm8kData,
    *,
    model: str,
    limit: int | None,
    max_tokens: int,
    fewshot_as_multiturn: bool = True,
    stop: Sequence[str] = P.STOP,
    fewshot_seed: int | None = P.FEWSHOT_SEED,
) -> list[tuple[int, list[int], dict[str, object]]]:
    """(doc_id, few-shot train ids, payload) for the first `limit` test docs (all when None)."""
    n_docs = len(data.test) if limit is None else min(limit, len(data.test))
    shots = P.fewshot_indices(n_docs, len(data.train), seed=fewshot_seed)
    requests = []
    for doc_id in range(n_docs):
        messages = P.build_messages(
            data.test[doc_id], [data.train[i] for i in shots[doc_id]], fewshot_as_multiturn=fewshot_as_multiturn
        )
        payload = P.build_payload(messages, model=model, max_tokens=max_tokens, stop=stop)
        requests.append((doc_id, shots[doc_id], payload))
    return requests


def run_gsm8k(
    base_url: str,
    model: str,
    *,
    limit: int | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    data_dir: str | Path | None = None,
    data: Gsm8kData | None = None,
    context_len: int = DEFAULT_CONTEXT_LEN,
    max_tokens: int | None = None,
    out: str | Path | None = None,
    model_prefix: str | None = None,
    thresholds: Thresholds | str | Path | None = None,
    fewshot_as_multiturn: bool = True,
    stop: Sequence[str] = P.STOP,
    timeout_s: float = REQUEST_TIMEOUT_S,
    max_retries: int = MAX_RETRIES,
    retry_policy: RetryPolicy | None = None,
    api_key: str | None = None,
) -> EvalResult:
    """Run the GSM8K eval against `base_url` and return the scored `EvalResult`.

    `limit` takes the first N test docs; `concurrency` bounds requests in flight; `data_dir` (or a
    preloaded `data`) replaces the hub download; `context_len` sets max_tokens = min(16384, ctx-4096),
    or ctx/2 when ctx <= 4096, unless `max_tokens` is given; `out` receives every sample (jsonl) and a
    `.summary.json` beside it; `model_prefix` and `thresholds` pick the accuracy floor.
    Raises `EvalRequestError` when a request fails permanently or exhausts its retries.
    Runs its own event loop; from async code use `collect_samples` with a `ChatClient`.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    dataset = data or load_gsm8k(data_dir)
    budget = max_tokens if max_tokens is not None else P.max_tokens_for_context(context_len)
    floors = thresholds if isinstance(thresholds, Thresholds) else load_thresholds(thresholds)
    requests = build_requests(
        dataset, model=model, limit=limit, max_tokens=budget, fewshot_as_multiturn=fewshot_as_multiturn, stop=stop
    )
    client = ChatClient(
        base_url, concurrency=concurrency, timeout_s=timeout_s,
        retry=retry_policy or RetryPolicy(max_retries=max_retries), api_key=api_key,
    )  # fmt: skip
    started = time.perf_counter()
    log.info("gsm8k: %d docs against %s (model %s, conc %d, max_tokens %d)", len(requests), base_url, model, concurrency, budget)
    samples = asyncio.run(collect_samples(client, requests, dataset))
    result = finish(
        summarize(samples).model_dump() | {"samples": samples},
        floors=floors, model_prefix=model_prefix, out=out, backend="native", model=model, base_url=base_url,
        concurrency=concurrency, max_tokens=budget, context_len=context_len,
        fewshot_as_multiturn=fewshot_as_multiturn, data_source=dataset.source, retries=client.retries,
        duration_s=time.perf_counter() - started,
    )  # fmt: skip
    log.info(
        "gsm8k: strict %.4f flexible %.4f n=%d (threshold %.2f from %s: %s)",
        result.strict_match, result.flexible_extract, result.n, result.threshold, result.threshold_source,
        "pass" if result.passed else result.failure_class,
    )
    return result


async def collect_samples(
    client: ChatClient, requests: Sequence[tuple[int, list[int], dict[str, object]]], dataset: Gsm8kData
) -> list[EvalSample]:
    """Send every request through `client` (bounded by its concurrency) and score each reply.

    The first request that fails for good cancels the rest and is raised: a partial score is not
    comparable with lm-eval's.
    """

    async def one(doc_id: int, shot_ids: list[int], payload: dict[str, object]) -> EvalSample:
        try:
            reply: ChatReply = await client.complete(payload)
        except EvalRequestError as exc:
            raise EvalRequestError(
                f"gsm8k doc {doc_id}: {exc}", status=exc.status, attempts=exc.attempts, transient=bool(exc.transient)
            ) from exc
        return score_sample(
            doc_id,
            reply.text,
            dataset.test[doc_id],
            prompt_hash=P.prompt_hash(payload["messages"]),  # type: ignore[arg-type]
            fewshot_ids=shot_ids,
            latency_s=reply.latency_s,
            attempts=reply.attempts,
            finish_reason=reply.finish_reason,
            used_reasoning_content=reply.used_reasoning_content,
        )

    async with client:
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(*request)) for request in requests]
        except* Exception as failures:  # surface the first failure itself, not an ExceptionGroup
            raise failures.exceptions[0] from None
    return [task.result() for task in tasks]
