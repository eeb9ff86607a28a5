"""Airflow glue: permanent → AirflowFailException, transient → retryable with exponential backoff."""

from __future__ import annotations

import pytest

from infersweep.faults import classify
from infersweep.faults.airflow import (
    TransientTaskError,
    decide,
    raise_classified,
    retry_delay_s,
    task_retry_kwargs,
)


def test_backoff_is_exponential_and_capped() -> None:
    assert [retry_delay_s(t) for t in (1, 2, 3, 4)] == [15.0, 30.0, 60.0, 120.0]
    assert retry_delay_s(20) == 600.0
    kw = task_retry_kwargs(retries=3)
    assert kw["retries"] == 3 and kw["retry_exponential_backoff"] and kw["max_retry_delay"].total_seconds() == 600


def test_permanent_failure_raises_airflow_fail_exception() -> None:
    pytest.importorskip("airflow.sdk")
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(AirflowFailException, match="kv_cache_oom") as err:
        raise_classified(RuntimeError("ValueError: No available memory for the cache blocks."), try_number=1)
    assert classify(err.value).kind == "kv_cache_oom"  # the class survives for the attempt record


def test_transient_failure_is_retryable_until_budget() -> None:
    pytest.importorskip("airflow.sdk")
    from airflow.sdk.exceptions import AirflowFailException

    with pytest.raises(TransientTaskError) as err:
        raise_classified(OSError(116, "Stale file handle"), try_number=1, max_tries=5)
    assert err.value.failure.kind == "stale_file_handle"
    with pytest.raises(AirflowFailException, match="retries exhausted"):
        raise_classified(OSError(116, "Stale file handle"), try_number=5, max_tries=5)


def test_unknown_gets_exactly_one_retry() -> None:
    fc = classify("weird failure 0xdeadbeef")
    assert decide(fc, try_number=1).retry is True
    assert decide(fc, try_number=2).retry is False
