"""Applying spool records to the database: one idempotent function per record kind.

Records name rows by natural keys (dag_id/run_id, group id, point), never by database ids, so a record
spooled before a crash applies the same way after it, on any connection.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, select

from infersweep.store.models import (
    Attempt,
    BenchmarkResult,
    EvalResult,
    EvalSample,
    PointDecision,
    Run,
    ServeGroupRow,
    ServerLog,
)
from infersweep.store.upsert import upsert, upsert_many

#: Group columns copied onto every result row (traceability without joins).
GROUP_IDENTITY = ("config_key", "image", "image_digest", "engine", "engine_version", "recipe_fingerprint")
GROUP_TOPOLOGY = ("model", "model_prefix", "precision", "framework", "runner", "tp", "ep", "dp_attn", "pp",
                  "dcp_size", "pcp_size", "spec_decoding", "router", "kv_p2p_transfer", "pools")
_DATETIME_FIELDS = {"logical_date", "started_at", "finished_at", "ended_at", "measured_at"}


def _dates(data: Mapping[str, Any]) -> dict[str, Any]:
    """JSON carries datetimes as ISO strings; turn them back into datetimes."""
    out = dict(data)
    for key in _DATETIME_FIELDS & out.keys():
        if isinstance(out[key], str):
            out[key] = datetime.fromisoformat(out[key])
    return out


def run_pk(conn: Connection, dag_id: str, run_id: str) -> int:
    """The run's id, creating a placeholder row if the run record was never applied.

    Cached in `conn.info` only while `apply_records` runs one transaction: a placeholder created by a
    transaction that is then rolled back must not be remembered.
    """
    cache: dict[tuple[str, str], int] | None = conn.info.get("infersweep_run_pk")
    if cache is not None and (dag_id, run_id) in cache:
        return cache[(dag_id, run_id)]
    found = conn.execute(select(Run.id).where(Run.dag_id == dag_id, Run.run_id == run_id)).scalar_one_or_none()
    if found is None:
        found = upsert(conn, Run, {"dag_id": dag_id, "run_id": run_id, "trigger_kind": "unknown"},
                       key=("dag_id", "run_id"), do_nothing=True)
    assert found is not None
    if cache is not None:
        cache[(dag_id, run_id)] = int(found)
    return int(found)


def group_row(conn: Connection, pk_run: int, group_id: str, config_key: str | None = None) -> RowMapping:
    """The serve group's columns, creating a placeholder row if the group record was never applied."""
    cols = ServeGroupRow.tbl().c
    stmt = ServeGroupRow.tbl().select().where(cols.run_pk == pk_run, cols.group_id == group_id)
    row = conn.execute(stmt).mappings().first()
    if row is None:
        upsert(conn, ServeGroupRow, {"run_pk": pk_run, "group_id": group_id, "config_key": config_key or ""},
               key=("run_pk", "group_id"), do_nothing=True)
        row = conn.execute(stmt).mappings().one()
    return row


def apply_run(conn: Connection, data: Mapping[str, Any]) -> None:
    values = _dates(data)
    changed = set(values) - {"dag_id", "run_id"}
    values.setdefault("trigger_kind", "unknown")  # NOT NULL on insert; a later start_run sets it
    upsert(conn, Run, values, key=("dag_id", "run_id"), update=changed)


def apply_group(conn: Connection, data: Mapping[str, Any]) -> None:
    values = _dates(data)
    pk = run_pk(conn, values.pop("dag_id"), values.pop("run_id"))
    values["run_pk"] = pk
    values.setdefault("config_key", "")
    upsert(conn, ServeGroupRow, values, key=("run_pk", "group_id"),
           update=set(data) - {"dag_id", "run_id", "group_id"})


def apply_attempt(conn: Connection, data: Mapping[str, Any]) -> None:
    values = _dates(data)
    pk = run_pk(conn, values.pop("dag_id"), values.pop("run_id"))
    group_id = values.pop("group_id", None)
    values["run_pk"] = pk
    values["group_pk"] = group_row(conn, pk, group_id)["id"] if group_id else None
    upsert(conn, Attempt, values, key=("run_pk", "task_id", "map_index", "try_number"))


def _result_values(conn: Connection, data: Mapping[str, Any]) -> tuple[dict[str, Any], RowMapping]:
    """Resolve run/group and fill identity from the group where the record left it out."""
    values = _dates(data)
    pk = run_pk(conn, values.pop("dag_id"), values.pop("run_id"))
    group = group_row(conn, pk, values.pop("group_id"), values.get("config_key"))
    values["run_pk"], values["group_pk"] = pk, group["id"]
    for col in GROUP_IDENTITY:
        if values.get(col) is None:
            values[col] = group[col]
    if not values.get("engine"):
        values["engine"] = "unknown"
    return values, group


def apply_benchmark(conn: Connection, data: Mapping[str, Any]) -> None:
    values, group = _result_values(conn, data)
    for col in GROUP_TOPOLOGY:
        if values.get(col) is None:
            values[col] = group[col]
    if values.get("gpus") is None and group["pools"]:
        from infersweep.plan.models import WorkerPool

        # Every GPU of every pool, as InferenceX's PREFILL_GPUS + DECODE_GPUS.
        values["gpus"] = sum(WorkerPool.model_validate(p).gpus for p in group["pools"])
    elif values.get("gpus") is None and group["tp"]:
        values["gpus"] = group["tp"] * (group["pp"] or 1) * (group["pcp_size"] or 1)
    upsert(conn, BenchmarkResult, values, key=("run_pk", "group_pk", "isl", "osl", "conc"))


def apply_eval(conn: Connection, data: Mapping[str, Any]) -> None:
    values, _group = _result_values(conn, data)
    samples = values.pop("samples", None) or []
    pk = upsert(conn, EvalResult, values, key=("run_pk", "group_pk", "task", "conc"))
    rows = [{"eval_pk": pk, **s} for s in samples]
    upsert_many(conn, EvalSample, rows, key=("eval_pk", "doc_id"))


def apply_decision(conn: Connection, data: Mapping[str, Any]) -> None:
    values = dict(data)
    pk = run_pk(conn, values.pop("dag_id"), values.pop("run_id"))
    values["run_pk"] = pk
    values["group_pk"] = group_row(conn, pk, values.pop("group_id"))["id"]
    upsert(conn, PointDecision, values, key=("run_pk", "group_pk", "isl", "osl", "conc", "policy"))


def apply_server_log(conn: Connection, data: Mapping[str, Any]) -> None:
    values = dict(data)
    pk = run_pk(conn, values.pop("dag_id"), values.pop("run_id"))
    values["run_pk"] = pk
    values["group_pk"] = group_row(conn, pk, values.pop("group_id"))["id"]
    values["content"] = base64.b64decode(values.pop("content_b64"))
    upsert(conn, ServerLog, values, key=("run_pk", "group_pk", "try_number", "source"))


APPLY: dict[str, Callable[[Connection, Mapping[str, Any]], None]] = {
    "run": apply_run,
    "group": apply_group,
    "attempt": apply_attempt,
    "benchmark": apply_benchmark,
    "eval": apply_eval,
    "server_log": apply_server_log,
    "decision": apply_decision,
}


def apply_record(conn: Connection, record: Mapping[str, Any]) -> None:
    """Apply one spool record (`{"kind", "data"}`); raises KeyError for an unknown kind."""
    APPLY[record["kind"]](conn, record["data"])


def apply_records(conn: Connection, records: Sequence[Mapping[str, Any]]) -> None:
    """Apply records in order inside the caller's transaction."""
    conn.info["infersweep_run_pk"] = {}
    try:
        for record in records:
            apply_record(conn, record)
    finally:
        conn.info.pop("infersweep_run_pk", None)
