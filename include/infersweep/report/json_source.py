"""Reading report points from result files, without a database.

Understood formats (detected per record):

- **infersweep spool** (`*.jsonl`): `{"kind": "benchmark" | "group" | "run", "data": {...}}` lines. Group
  records fill the topology a benchmark record leaves out, as the store does. A benchmark record's `raw`
  client JSON gives the cost per GPU-hour and joules per output token, its `intervals` the confidence
  intervals (as the store reads them).
- **InferenceX aggregate** (`agg_*.json`, `agg_bmk.json`): objects with `hw`, `tput_per_gpu` and
  latencies in seconds (`median_ttft`, …) as written by InferenceX's `utils/process_result.py`.
- **ReportPoint JSON**: objects with ReportPoint's own field names (`--results-dir` round trips).

A file that matches none of them is an error naming the file and the record, never silently skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from infersweep.faults.errors import InfersweepError
from infersweep.report.data import COST_FROM_INVENTORY, ReportPoint, clean_intervals, raw_cost_energy

_FIELDS = set(ReportPoint.model_fields)
#: InferenceX stores every `*_ms` metric in seconds under the name without `_ms`.
_INFERENCEX_SECONDS = {
    "median_ttft": "median_ttft_ms", "p99_ttft": "p99_ttft_ms", "median_tpot": "median_tpot_ms",
    "p99_tpot": "p99_tpot_ms", "median_e2el": "median_e2el_ms", "p99_e2el": "p99_e2el_ms",
}


class ResultFileError(InfersweepError, ValueError):
    """A result file could not be read as report points."""

    kind = "config_error"
    transient = False


def from_inferencex(rec: Mapping[str, Any], *, run_id: str) -> ReportPoint:
    """One InferenceX aggregate record as a ReportPoint (seconds → ms; config key rebuilt)."""
    prefix = rec.get("infmax_model_prefix") or ""
    hw = str(rec.get("hw", ""))
    data: dict[str, Any] = {
        "run_id": run_id,
        "engine": "inferencex",
        "image": rec.get("image"),
        "recipe_fingerprint": rec.get("recipe_fingerprint"),
        "config_key": f"{prefix}-{rec.get('precision', '')}-{hw}-{rec.get('framework', '')}" if prefix else "",
        "model": rec.get("model", ""),
        "model_prefix": prefix or None,
        "runner": hw,
        "framework": rec.get("framework", ""),
        "precision": rec.get("precision", ""),
        "spec_decoding": None if rec.get("spec_decoding") in (None, "none") else rec["spec_decoding"],
        "tp": int(rec.get("tp") or 1),
        "ep": int(rec.get("ep") or 1),
        "dp_attn": str(rec.get("dp_attention", False)).lower() == "true",
        "pp": int(rec.get("pp") or 1),
        "isl": int(rec["isl"]),
        "osl": int(rec["osl"]),
        "conc": int(rec["conc"]),
        "tput_per_gpu": rec.get("tput_per_gpu"),
        "output_tput_per_gpu": rec.get("output_tput_per_gpu"),
        "median_intvty": rec.get("median_intvty"),
        "status": "failed" if rec.get("error") else "ok",
        "error": rec.get("error"),
    }
    for seconds, ms in _INFERENCEX_SECONDS.items():
        if rec.get(seconds) is not None:
            data[ms] = float(rec[seconds]) * 1000.0
    if str(rec.get("is_multinode", False)).lower() == "true":
        data.update(_inferencex_pools(rec))
    return ReportPoint(**data)


def _inferencex_pools(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A multinode aggregate record's pools and GPU count (process_result's prefill_* / decode_* keys)."""
    pools = []
    for role in ("prefill", "decode"):
        workers = int(rec.get(f"{role}_num_workers") or 0)
        if not workers or not int(rec.get(f"num_{role}_gpu") or 0):
            continue
        pools.append({"role": role, "num_worker": workers, "tp": int(rec.get(f"{role}_tp") or 1),
                      "ep": int(rec.get(f"{role}_ep") or 1), "pp": int(rec.get(f"{role}_pp") or 1),
                      "dp_attn": str(rec.get(f"{role}_dp_attention", False)).lower() == "true"})
    gpus = int(rec.get("num_prefill_gpu") or 0) + int(rec.get("num_decode_gpu") or 0)
    return {"pools": pools or None, **({"gpus": gpus} if gpus else {})}


def _spool_points(records: Iterable[Mapping[str, Any]], *, source: str) -> list[ReportPoint]:
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    benches: list[dict[str, Any]] = []
    for rec in records:
        kind, data = rec.get("kind"), dict(rec.get("data") or {})
        if kind == "group":
            groups[(data.get("dag_id", ""), data.get("run_id", ""), data.get("group_id", ""))] = data
        elif kind == "run":
            runs[(data.get("dag_id", ""), data.get("run_id", ""))] = data
        elif kind == "benchmark":
            benches.append(data)
    points = []
    for b in benches:
        group = groups.get((b.get("dag_id", ""), b.get("run_id", ""), b.get("group_id", "")), {})
        run = runs.get((b.get("dag_id", ""), b.get("run_id", "")), {})
        merged = {k: v for k, v in group.items() if k in _FIELDS and v is not None}
        merged.update({k: v for k, v in b.items() if k in _FIELDS and v is not None})
        cost, jpt = raw_cost_energy(b.get("raw"))
        if cost is not None and "cost_per_gpu_hour" not in merged:
            merged["cost_per_gpu_hour"], merged["cost_source"] = cost, COST_FROM_INVENTORY
        if jpt is not None and "joules_per_token" not in merged:
            merged["joules_per_token"] = jpt
        merged["intervals"] = clean_intervals(merged.get("intervals"))
        if run.get("started_at") and "run_started_at" not in merged:
            merged["run_started_at"] = run["started_at"]
        merged["status"] = "ok" if merged.get("status", "ok") == "ok" else "failed"
        try:
            points.append(ReportPoint(**merged))
        except ValidationError as exc:
            raise ResultFileError(f"{source}: benchmark record for conc={b.get('conc')} is invalid: {exc}") from None
    return points


def _record_points(obj: Any, *, source: str) -> list[ReportPoint]:
    records = obj if isinstance(obj, list) else obj.get("points", [obj]) if isinstance(obj, dict) else None
    if records is None:
        raise ResultFileError(f"{source}: expected a JSON object or a list of objects, got {type(obj).__name__}")
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise ResultFileError(f"{source}: record [{i}] is {type(rec).__name__}, expected an object")
        try:
            if "hw" in rec and "tput_per_gpu" in rec:
                out.append(from_inferencex(rec, run_id=Path(source).stem))
            elif "kind" in rec and "data" in rec:
                out.extend(_spool_points([rec], source=source))
            else:
                point = ReportPoint(**rec)
                # The same shape check as the store's: a malformed interval is dropped, never half-drawn.
                out.append(point.model_copy(update={"intervals": clean_intervals(point.intervals)}))
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
            raise ResultFileError(
                f"{source}: record [{i}] is neither an InferenceX aggregate, a spool record nor a ReportPoint: {exc}"
            ) from None
    return out


def load_file(path: Path) -> list[ReportPoint]:
    """Points from one `.json` or `.jsonl` file."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResultFileError(f"{path}: cannot read: {exc}") from None
    try:
        if path.suffix == ".jsonl":
            records = [orjson.loads(line) for line in raw.splitlines() if line.strip()]
            return _spool_points(records, source=str(path))
        return _record_points(orjson.loads(raw), source=str(path))
    except orjson.JSONDecodeError as exc:
        raise ResultFileError(f"{path}: not valid JSON: {exc}") from None


def load_dir(directory: Path) -> list[ReportPoint]:
    """Points from every `*.json` / `*.jsonl` file under a directory (sorted, recursive)."""
    if not directory.is_dir():
        raise ResultFileError(f"{directory}: not a directory (--results-dir expects a folder of result JSON files)")
    files = sorted(p for p in directory.rglob("*") if p.suffix in {".json", ".jsonl"} and p.is_file())
    points: list[ReportPoint] = []
    for f in files:
        points.extend(load_file(f))
    return points


def dump_points(points: Iterable[ReportPoint], path: Path) -> None:
    """Write points as a ReportPoint JSON list (readable back by `load_file`)."""
    path.write_bytes(orjson.dumps([p.model_dump(mode="json") for p in points], option=orjson.OPT_INDENT_2))
