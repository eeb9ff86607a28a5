"""Turning scores into an `EvalResult` (threshold verdict included) and writing it to disk.

Shared by both backends so a native run and an lm-eval run are judged and stored the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from infersweep.evals.models import TASK_GSM8K, EvalResult
from infersweep.evals.thresholds import Thresholds, verdict


def finish(
    scores: dict[str, Any], *, floors: Thresholds, model_prefix: str | None, out: str | Path | None, **run: Any
) -> EvalResult:
    """Apply the model's accuracy floor to `scores` (ScoreSummary fields + samples) and build the result.

    `run` carries the bookkeeping fields (backend, model, base_url, concurrency, retries, …). When
    `out` is given the samples and summary are written (see `write_result`).
    """
    threshold, source = floors.resolve(model_prefix, scores.get("task", TASK_GSM8K))
    passed, failure_class = verdict({"strict": scores["strict_match"], "flexible": scores["flexible_extract"]}, threshold)
    result = EvalResult(
        **scores, **run, threshold=threshold, threshold_source=source, passed=passed, failure_class=failure_class
    )
    if out is not None:
        write_result(result, out)
    return result


def summary_path(out: str | Path) -> Path:
    """Where the summary JSON goes for a samples file: `x.jsonl` -> `x.summary.json`."""
    path = Path(out)
    return path.with_name(f"{path.stem if path.suffix == '.jsonl' else path.name}.summary.json")


def write_result(result: EvalResult, out: str | Path) -> None:
    """Write every sample to `out` (jsonl) and the summary beside it; each file appears whole or not at all."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, [sample.model_dump() for sample in result.samples])
    atomic_write(summary_path(path), orjson.dumps(result.summary(), option=orjson.OPT_INDENT_2) + b"\n")


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as jsonl atomically."""
    atomic_write(path, b"".join(orjson.dumps(row) + b"\n" for row in rows))


def atomic_write(path: Path, payload: bytes) -> None:
    """Write to a temporary sibling, then rename over `path`."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)
