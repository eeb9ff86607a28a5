"""Result schemas of the eval step (pydantic, validated once at the edge)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

TASK_GSM8K = "gsm8k"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvalSample(_Strict):
    """One scored test doc: what was asked, what came back, what each filter extracted."""

    doc_id: int = Field(ge=0, description="0-based index in the test split")
    prompt_hash: str | None = Field(None, description="sha256 of the chat JSON, as lm-eval's prompt_hash")
    fewshot_ids: list[int] | None = Field(None, description="train-split indices of the few-shot examples")
    response: str
    strict_match_answer: str
    flexible_extract_answer: str
    strict_match_correct: bool
    flexible_extract_correct: bool
    target: str = Field(description="the reference answer's final number after normalisation")
    latency_s: float | None = None
    attempts: int | None = Field(None, description="HTTP attempts this request took (1 = no retry)")
    finish_reason: str | None = None
    used_reasoning_content: bool = False

    def store_row(self) -> dict[str, object]:
        """The sample in the result store's `eval_samples` vocabulary (extra fields go to its `data`)."""
        row = self.model_dump(exclude_none=True)
        for ours, theirs in _SAMPLE_STORE_NAMES.items():
            row[theirs] = row.pop(ours)
        return row


class ScoreSummary(_Strict):
    """Accuracy of both filters over n docs, with lm-eval's standard errors (None when n < 2)."""

    task: str = TASK_GSM8K
    n: int
    strict_match: float
    flexible_extract: float
    stderr_strict_match: float | None
    stderr_flexible_extract: float | None


class EvalResult(ScoreSummary):
    """A finished eval: the scores, every sample, the run's bookkeeping and the threshold verdict."""

    samples: list[EvalSample]
    backend: str = "native"
    model: str | None = None
    base_url: str | None = None
    concurrency: int | None = None
    max_tokens: int | None = None
    context_len: int | None = None
    num_fewshot: int = 5
    fewshot_as_multiturn: bool = True
    data_source: str | None = None
    retries: int | None = Field(0, description="transient-error retries across all requests (None: not reported)")
    duration_s: float = 0.0
    threshold: float
    threshold_source: str
    passed: bool
    failure_class: str | None = Field(None, description="'accuracy_below_threshold' when not passed")

    def summary(self) -> dict[str, object]:
        """The result without the per-sample list (what a log line or a summary table needs)."""
        return self.model_dump(exclude={"samples"})

    def store_record(self) -> dict[str, object]:
        """`result=` for `ResultStore.record_eval`: its column names, run details in `metrics`, summary in `raw`."""
        summary = self.summary()
        return {
            "n": self.n,
            "strict": self.strict_match,
            "flexible": self.flexible_extract,
            "strict_stderr": self.stderr_strict_match,
            "flexible_stderr": self.stderr_flexible_extract,
            "threshold": self.threshold,
            "passed": self.passed,
            "metrics": {k: summary[k] for k in _RUN_METRICS},
            "raw": summary,
        }

    def store_samples(self) -> list[dict[str, object]]:
        """`samples=` for `ResultStore.record_eval`."""
        return [sample.store_row() for sample in self.samples]


_SAMPLE_STORE_NAMES = {
    "strict_match_answer": "strict_answer",
    "flexible_extract_answer": "flexible_answer",
    "strict_match_correct": "strict_correct",
    "flexible_extract_correct": "flexible_correct",
}
_RUN_METRICS = (
    "backend", "retries", "duration_s", "threshold_source", "failure_class", "max_tokens", "context_len",
    "num_fewshot", "fewshot_as_multiturn", "concurrency", "data_source",
)  # fmt: skip
