"""Serve groups: jobs that differ only in concurrency share one server boot.

InferenceX boots a server per job; the MiniMax-M3 Hopper keys reload a 444 GB checkpoint 45 times. A
serve group's server is started once and benchmarked at every concurrency of the group, ascending.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from infersweep.plan.models import Job, ServeGroup

#: Job fields that do not change the server: the client's concurrency and whether that point is evaluated.
_PER_POINT_FIELDS = frozenset({"conc", "run_eval"})
_FINGERPRINT_VERSION = "infersweep.serve-group.v1"
ID_LENGTH = 12


#: Job fields that define the server (the recipe inputs), in model order.
RECIPE_FIELDS: tuple[str, ...] = tuple(f for f in Job.model_fields if f not in _PER_POINT_FIELDS)
#: Fields added after v1 ids were issued: left out of the fingerprint while unset, so every existing
#: group keeps its id (and its stored results stay reusable) and only groups that set them get new ids.
_UNSET_NOT_FINGERPRINTED = frozenset({"router", "kv_p2p_transfer"})


def group_key(job: Job) -> dict[str, Any]:
    """The canonical recipe inputs of a job: every field except conc and run-eval (nested models as data)."""
    return {f: (v.model_dump(mode="json") if isinstance(v := getattr(job, f), BaseModel) else v)
            for f in RECIPE_FIELDS}


def server_tuple(job: Job) -> tuple[Any, ...]:
    """`group_key` as a hashable tuple (cheap; used to bucket jobs before fingerprinting)."""
    return tuple(getattr(job, f) for f in RECIPE_FIELDS)


def group_fingerprint(recipe_inputs: dict[str, Any]) -> str:
    """Short, stable id: sha256 of the canonical JSON (sorted keys), so file order never changes it."""
    inputs = {k: v for k, v in recipe_inputs.items() if not (v is None and k in _UNSET_NOT_FINGERPRINTED)}
    payload = json.dumps({"v": _FINGERPRINT_VERSION, **inputs}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:ID_LENGTH]


def group_jobs(jobs: Sequence[Job]) -> list[ServeGroup]:
    """Group jobs that differ only in conc; groups keep first-appearance order, concs ascend."""
    buckets: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        buckets.setdefault(server_tuple(job), []).append(job)
    groups = []
    for members in buckets.values():
        inputs = group_key(members[0])
        groups.append(ServeGroup(
            id=group_fingerprint(inputs), **inputs,
            concs=tuple(sorted({j.conc for j in members})),
            eval_concs=tuple(sorted({j.conc for j in members if j.run_eval})),
        ))
    return groups


def jobs_by_group(jobs: Sequence[Job]) -> dict[str, list[Job]]:
    """Group id → its jobs in plan order (for runners that need the per-point rows)."""
    buckets: dict[tuple[Any, ...], list[Job]] = {}
    for job in jobs:
        buckets.setdefault(server_tuple(job), []).append(job)
    return {group_fingerprint(group_key(m[0])): m for m in buckets.values()}
