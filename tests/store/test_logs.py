"""Server-log packing (compression, size cap with a truncation marker, secret redaction) and small helpers."""

from __future__ import annotations

from infersweep.store.logs import pack_log, redact, unpack_log


def test_small_log_round_trips_compressed() -> None:
    text = "INFO vLLM API server version 0.11.0\n" * 200
    packed = pack_log(text)
    assert not packed.truncated and packed.stored_bytes < packed.original_bytes
    assert unpack_log(packed.content) == text


def test_large_log_keeps_head_and_tail_with_marker() -> None:
    head, tail = "BANNER vllm serve args\n", "ValueError: No available memory for the cache blocks.\n"
    text = head + ("x" * 99 + "\n") * 10_000 + tail
    packed = pack_log(text, max_bytes=8192)
    stored = unpack_log(packed.content)
    assert packed.truncated and packed.original_bytes == len(text.encode())
    assert stored.startswith(head) and stored.endswith(tail)
    assert "bytes truncated from the middle of this log" in stored
    assert len(stored.encode()) < 8192 + 200


def test_tokens_and_passwords_are_redacted(monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_canaryCANARYcanary0123456789")
    text = ("token hf_canaryCANARYcanary0123456789 used; db postgresql://bench:pw-XYZ-123@db/results; "
            "HF_TOKEN=abcdef123456")
    out = redact(text)
    assert "canary" not in out.lower() and "pw-XYZ-123" not in out and "abcdef123456" not in out
    assert "postgresql://bench:***@db/results" in out


def test_trigger_kind_from_airflow_run_types() -> None:
    from infersweep.store.api import trigger_kind

    assert trigger_kind("manual", "rest_api") == "api"
    assert trigger_kind("manual", "ui") == "manual"
    assert trigger_kind("manual", "test") == "test"
    assert trigger_kind("scheduled", "timetable") == "scheduled"
    assert trigger_kind("backfill", "backfill") == "backfill"
    assert trigger_kind("asset_triggered") == "asset"
    try:
        from airflow.utils.types import DagRunTriggeredByType, DagRunType
    except ImportError:
        return
    assert trigger_kind(DagRunType.MANUAL, DagRunTriggeredByType.REST_API) == "api"
    assert trigger_kind(DagRunType.BACKFILL_JOB, DagRunTriggeredByType.BACKFILL) == "backfill"
