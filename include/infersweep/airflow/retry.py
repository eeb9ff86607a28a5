"""Airflow retries driven by the failure classifier.

Airflow 3.3's `retry_policy` hook runs in the worker with the real exception, so the classifier decides:
permanent classes fail at once (no wasted GPU hours on a deterministic error), transient ones retry with
exponential backoff, and unknown failures get exactly one retry.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import RetryDecision, RetryPolicy

from infersweep.faults import classify

if TYPE_CHECKING:
    from airflow.sdk import Context

class FailureClassRetryPolicy(RetryPolicy):
    """Map `infersweep.faults.classify(exc)` onto an Airflow retry decision."""

    def __init__(self, *, base_delay_s: float = 15.0, max_delay_s: float = 600.0) -> None:
        if base_delay_s <= 0 or max_delay_s < base_delay_s:
            raise ValueError("need 0 < base_delay_s <= max_delay_s")
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Context | None = None,
    ) -> RetryDecision:
        fc = classify(exception)
        reason = f"{fc.kind}: {fc.hint}" if fc.hint else fc.kind
        if not fc.transient:
            return RetryDecision.fail(reason=f"permanent failure ({reason})")
        if fc.max_retries is not None and try_number - 1 >= fc.max_retries:
            # e.g. unknown failures: retried once, then they fail rather than burn GPU hours.
            return RetryDecision.fail(reason=f"{fc.kind}: already retried {fc.max_retries}x ({reason})")
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** max(0, try_number - 1))
        return RetryDecision.retry(delay=timedelta(seconds=delay), reason=f"transient failure ({reason})")

    def serialize(self) -> dict[str, Any]:
        return {"base_delay_s": self.base_delay_s, "max_delay_s": self.max_delay_s}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> FailureClassRetryPolicy:
        return cls(**data)
