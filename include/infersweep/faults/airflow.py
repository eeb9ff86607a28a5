"""Airflow glue for failure classes: fail fast on permanent failures, back off on transient ones.

Airflow is imported lazily so `infersweep.faults` stays importable (and testable) without it. The DAG's
tasks call `raise_classified(exc, try_number=…)` in their `except` block (after recording the attempt);
`retry_delay_s` / `task_retry_kwargs` give the backoff schedule used for task defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

from infersweep.faults.classify import FailureClass, classify

BASE_DELAY_S = 15.0
MAX_DELAY_S = 600.0
#: Task-level retry budget for transient classes (classes with `max_retries` are capped lower).
DEFAULT_RETRIES = 4


class TransientTaskError(RuntimeError):
    """A classified transient failure: Airflow retries the task (with the task's backoff)."""

    def __init__(self, failure: FailureClass, message: str) -> None:
        super().__init__(message)
        self.failure = failure
        self.failure_kind = failure.kind


@dataclass(frozen=True)
class RetryDecision:
    """Whether another try should run and after how long."""

    retry: bool
    delay_s: float
    reason: str


def retry_delay_s(try_number: int, *, base_s: float = BASE_DELAY_S, max_s: float = MAX_DELAY_S) -> float:
    """Exponential backoff: base·2^(try−1), capped (try_number is Airflow's 1-based try)."""
    return float(min(max_s, base_s * 2 ** max(0, try_number - 1)))


def decide(failure: FailureClass, *, try_number: int, max_tries: int | None = None) -> RetryDecision:
    """The retry decision for `failure` at Airflow try `try_number` (1-based)."""
    reason = f"{failure.kind}: {failure.hint}" if failure.hint else failure.kind
    if not failure.transient:
        return RetryDecision(False, 0.0, f"permanent failure ({reason})")
    cap = failure.max_retries
    retries_done = try_number - 1
    if cap is not None and retries_done >= cap:
        return RetryDecision(False, 0.0, f"already retried {retries_done}x, the limit for {failure.kind} ({reason})")
    if max_tries is not None and try_number >= max_tries:
        return RetryDecision(False, 0.0, f"retries exhausted after {try_number} tries ({reason})")
    return RetryDecision(True, retry_delay_s(try_number), f"transient failure ({reason})")


def task_retry_kwargs(*, retries: int = DEFAULT_RETRIES, base_s: float = BASE_DELAY_S,
                      max_s: float = MAX_DELAY_S) -> dict[str, Any]:
    """Operator/`@task` kwargs for exponential backoff matching `retry_delay_s`."""
    return {
        "retries": retries,
        "retry_delay": timedelta(seconds=base_s),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=max_s),
    }


def raise_classified(error: BaseException | str, *, try_number: int = 1, max_tries: int | None = None,
                     failure: FailureClass | None = None) -> NoReturn:
    """Re-raise `error` the way Airflow should treat it.

    Permanent (or out-of-budget) → `AirflowFailException`: no retry, no wasted GPU hours.
    Transient → `TransientTaskError`: Airflow retries with its backoff.
    """
    fc = failure or classify(error)
    decision = decide(fc, try_number=try_number, max_tries=max_tries)
    message = f"[{fc.kind}] {decision.reason}\n{error}"
    cause = error if isinstance(error, BaseException) else None
    if decision.retry:
        raise TransientTaskError(fc, message) from cause
    from airflow.sdk.exceptions import AirflowFailException

    exc = AirflowFailException(message)
    exc.failure_kind = fc.kind  # type: ignore[attr-defined]  # lets classify() and the store see the class
    raise exc from cause
