"""Load the recorded real vLLM CPU ladder (perf/data/vllm_cpu_ladder.json, written by perf/real_ladder.py).

    from perf._ladder_data import load_real_ladder
    groups = load_real_ladder()          # [{"id", "topology", "gpus", "points": [{"conc", "tput_per_gpu", ...}]}]

Each group is one server topology; its points are sorted by concurrency and carry the store's headline columns
(`tput_per_gpu`, `output_tput_per_gpu`, `median_intvty` = 1000 / median TPOT ms, `median_tpot_ms`,
`median_ttft_ms`, `p99_ttft_ms`, `p99_tpot_ms`, `duration_s`, `completed`, `failed`) and the per-request lists
under `requests` (`ttfts`, `latencies`, `tpots` in s; `input_lens`, `output_lens`). Points that errored out
(no measurement) are dropped unless `keep_errors=True`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).resolve().parent / "data" / "vllm_cpu_ladder.json"

POINT_KEYS = ("conc", "tput_per_gpu", "output_tput_per_gpu", "median_tpot_ms", "median_intvty",
              "median_ttft_ms", "p99_ttft_ms", "p99_tpot_ms", "duration_s", "completed", "failed", "requests")
REQUEST_KEYS = ("ttfts", "latencies", "tpots", "input_lens", "output_lens")


class LadderDataError(ValueError):
    """The recorded ladder file is missing or not in the shape perf/real_ladder.py writes."""


def load_meta(path: str | Path = DEFAULT_PATH) -> dict[str, Any]:
    """The file's `meta` block (vLLM version, model, ISL/OSL, machine, command, dates)."""
    return _read(Path(path))["meta"]


def load_real_ladder(path: str | Path = DEFAULT_PATH, *, keep_errors: bool = False,
                     min_points: int = 1) -> list[dict[str, Any]]:
    """The groups of the recorded ladder, validated; points sorted by concurrency.

    Raises LadderDataError (with the command that makes the file) when the file is missing, is not JSON, or
    a group or point lacks a field; groups with fewer than `min_points` measured points are an error too.
    """
    path = Path(path)
    data = _read(path)
    groups = data["groups"]
    if not isinstance(groups, list) or not groups:
        raise LadderDataError(f"{path}: 'groups' must be a non-empty list")
    out = []
    for gi, g in enumerate(groups):
        where = f"{path}: groups[{gi}]"
        if not isinstance(g, dict):
            raise LadderDataError(f"{where} is not an object")
        for key in ("id", "topology", "gpus", "points"):
            if key not in g:
                raise LadderDataError(f"{where} has no {key!r}")
        where = f"{path}: group {g['id']!r}"
        if not isinstance(g["gpus"], int) or g["gpus"] < 1:
            raise LadderDataError(f"{where}: gpus must be a positive integer, got {g['gpus']!r}")
        points = []
        for p in g["points"]:
            if "error" in p:
                if keep_errors:
                    points.append(p)
                continue
            _check_point(p, f"{where} conc {p.get('conc')!r}")
            points.append(p)
        measured = [p for p in points if "error" not in p]
        if len(measured) < min_points:
            raise LadderDataError(f"{where}: {len(measured)} measured points, need at least {min_points}")
        concs = [p["conc"] for p in measured]
        if len(set(concs)) != len(concs):
            raise LadderDataError(f"{where}: duplicate concurrencies {concs}")
        out.append({**g, "points": sorted(points, key=lambda p: p["conc"])})
    return out


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise LadderDataError(
            f"{path} not found: record it with `.venv/bin/python perf/real_ladder.py` (needs the real vLLM lane: "
            "`bash scripts/real_engine/install.sh`; 15-40 min on 2 cores)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise LadderDataError(f"{path} is not valid JSON ({exc}); was the recording interrupted mid-write?") from exc
    if not isinstance(data, dict) or "meta" not in data or "groups" not in data:
        raise LadderDataError(f"{path}: expected an object with 'meta' and 'groups'")
    return data


def _check_point(p: dict[str, Any], where: str) -> None:
    missing = [k for k in POINT_KEYS if k not in p]
    if missing:
        raise LadderDataError(f"{where}: missing {', '.join(missing)}")
    if not isinstance(p["conc"], int) or p["conc"] < 1:
        raise LadderDataError(f"{where}: conc must be a positive integer")
    for key in ("tput_per_gpu", "median_intvty"):
        v = p[key]
        if not isinstance(v, (int, float)) or v != v or v <= 0:
            raise LadderDataError(f"{where}: {key} must be a positive number, got {v!r}")
    req = p["requests"]
    missing = [k for k in REQUEST_KEYS if k not in req]
    if missing:
        raise LadderDataError(f"{where}: requests missing {', '.join(missing)}")
    n = len(req["ttfts"])
    if any(len(req[k]) != n for k in REQUEST_KEYS):
        raise LadderDataError(f"{where}: per-request lists differ in length "
                              + str({k: len(req[k]) for k in REQUEST_KEYS}))
    if n != p["completed"] + p["failed"]:
        raise LadderDataError(f"{where}: {n} per-request entries but completed + failed = "
                              f"{p['completed'] + p['failed']}")
