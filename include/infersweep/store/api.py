"""`ResultStore`: the small typed API the DAG uses to record a run.

Every `record_*` call first appends the record to the local spool (fsync), then tries to flush the spool
to the database. If the database is down the call still returns: the record waits in the spool and the
next write, or `flush()` in the teardown, delivers it. Writes are upserts on natural keys, so a retried
task or a replayed spool never duplicates a row.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from infersweep.bench.point import PointResult
from infersweep.faults import FailureClass, classify
from infersweep.plan.models import ServeGroup
from infersweep.recipes.model import Recipe
from infersweep.store.db import get_engine, mask_url, resolve_url, write_transaction
from infersweep.store.logs import DEFAULT_MAX_BYTES, pack_log, redact
from infersweep.store.metrics import point_columns
from infersweep.store.migrate import ensure_schema
from infersweep.store.records import apply_records, group_row, run_pk
from infersweep.store.reuse import completed_evals, completed_points, copy_latest
from infersweep.store.spool import FlushResult, Spool
from infersweep.store.views import failure_breakdown, run_summary

log = logging.getLogger(__name__)

TRIGGER_KINDS = ("manual", "scheduled", "backfill", "api", "asset", "test", "unknown")
MESSAGE_CAP = 4000
#: After a failed delivery, record_* calls only spool (no DB attempt) for this long.
DB_DOWN_BACKOFF_S = float(os.environ.get("INFERSWEEP_DB_DOWN_BACKOFF_S", "15"))


def trigger_kind(run_type: Any, triggered_by: Any = None) -> str:
    """Our trigger kind from Airflow's DagRunType (+ DagRunTriggeredByType: a REST-triggered manual run is `api`).

    Accepts the enums or their string values.
    """
    rt = str(getattr(run_type, "value", run_type) or "").lower()
    by = str(getattr(triggered_by, "value", triggered_by) or "").lower()
    if rt == "manual":
        return {"rest_api": "api", "test": "test"}.get(by, "manual")
    return {"scheduled": "scheduled", "backfill": "backfill", "backfill_job": "backfill",
            "asset_triggered": "asset", "asset_materialization": "asset",
            "operator_triggered": "manual"}.get(rt, "unknown")


def default_spool_path(url: str) -> Path:
    """One spool per results DB per host (`INFERSWEEP_SPOOL_DIR`, default ./.infersweep/spool)."""
    root = Path(os.environ.get("INFERSWEEP_SPOOL_DIR", Path(".infersweep") / "spool"))
    return root / f"results-{hashlib.sha256(url.encode()).hexdigest()[:12]}.jsonl"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _drop_none(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class ReusePlan:
    """What a serve group still has to do after checking the store."""

    done_concs: set[int] = field(default_factory=set)
    pending_concs: list[int] = field(default_factory=list)
    done_eval_concs: set[int] = field(default_factory=set)
    pending_eval_concs: list[int] = field(default_factory=list)
    copied: dict[str, int] = field(default_factory=dict)

    @property
    def needs_server(self) -> bool:
        """False when every point and eval is done: the group boots no server at all."""
        return bool(self.pending_concs or self.pending_eval_concs)


class ResultStore:
    """Record one DAG run's results (`dag_id`, `run_id`) durably and idempotently."""

    def __init__(
        self,
        *,
        dag_id: str,
        run_id: str,
        url: str | None = None,
        engine: Engine | None = None,
        spool_path: Path | None = None,
        migrate: bool = True,
    ) -> None:
        """`migrate=True` brings the schema to head on first use (a no-op check once it is there)."""
        self.url = resolve_url(url) if engine is None else engine.url.render_as_string(hide_password=False)
        self.engine = engine or get_engine(self.url)
        self.dag_id, self.run_id = dag_id, run_id
        self.spool = Spool(spool_path or default_spool_path(self.url))
        self._migrate = migrate
        self._db_down_until = 0.0

    def __repr__(self) -> str:
        return f"ResultStore({self.dag_id}/{self.run_id} @ {mask_url(self.url)})"

    # ------------------------------------------------------------------ write path
    def _write(self, kind: str, data: dict[str, Any]) -> None:
        self.spool.append(kind, {"dag_id": self.dag_id, "run_id": self.run_id, **data})
        # After the DB was found unreachable, writes only spool for a while: with a black-holed DB each
        # attempt would cost a full connect timeout between benchmark points. flush() always tries.
        if time.monotonic() >= self._db_down_until:
            self._flush(lock_timeout_s=0)

    def _apply(self, records: list[dict[str, Any]]) -> None:
        if self._migrate:
            # Inside the flush so a DB that is down is "unavailable" (records stay spooled), not an error.
            ensure_schema(self.engine)
        with write_transaction(self.engine) as conn:
            apply_records(conn, records)

    def _flush(self, *, lock_timeout_s: float | None) -> FlushResult:
        result = self.spool.flush(self._apply, lock_timeout_s=lock_timeout_s)
        self._db_down_until = time.monotonic() + DB_DOWN_BACKOFF_S if result.error else 0.0
        if result.error:
            log.warning("results DB %s unavailable (%s); %d record(s) kept in spool %s",
                        mask_url(self.url), result.error, result.remaining, self.spool.path)
        return result

    def flush(self, *, timeout_s: float = 60.0) -> FlushResult:
        """Deliver every spooled record, retrying with backoff until `timeout_s`; teardown calls this.

        Returns the last FlushResult; `complete` is False when the DB stayed unreachable (the records
        remain in the spool for the next flush).
        """
        deadline = time.monotonic() + timeout_s
        delay = 0.5
        while True:
            result = self._flush(lock_timeout_s=max(1.0, deadline - time.monotonic()))
            if result.complete or time.monotonic() + delay > deadline:
                return result
            time.sleep(delay)
            delay = min(delay * 2, 10.0)

    def start_run(
        self,
        *,
        trigger_kind: str,
        logical_date: datetime | None = None,
        config_key: str | None = None,
        image_tag: str | None = None,
        image_digest: str | None = None,
        engine: str | None = None,
        engine_version: str | None = None,
        params: Mapping[str, Any] | None = None,
        started_at: datetime | None = None,
        not_executed: Mapping[str, Any] | None = None,
    ) -> None:
        """Create/update the run row (idempotent: a re-run of the plan task updates it). `not_executed` is the
        work the run planned but does not execute yet (e.g. agentic-coding rows), shown in run summaries."""
        if trigger_kind not in TRIGGER_KINDS:
            raise ValueError(f"trigger_kind {trigger_kind!r} is not one of {TRIGGER_KINDS}")
        self._write("run", _drop_none({
            "trigger_kind": trigger_kind, "logical_date": _iso(logical_date), "config_key": config_key,
            "image_tag": image_tag, "image_digest": image_digest, "engine": engine,
            "engine_version": engine_version, "params": dict(params) if params is not None else None,
            "started_at": _iso(started_at or datetime.now().astimezone()), "status": "running",
            "not_executed": dict(not_executed) if not_executed is not None else None,
        }))

    def finish_run(self, status: str | None = None, *, finished_at: datetime | None = None) -> str:
        """Mark the run finished; without `status`, success iff no point/eval/group failed and every group
        got past `planned`. Returns it.

        A group still `planned` at the end never started its server (its chain stopped before `serve` could
        record a failure): the run is not a success then either. `serving` is fine: Airflow does not make
        `finalize` wait for the teardown tasks of a task group, so a group may still be tearing down."""
        self.flush()
        if status is None:
            summary = self.summary()
            failed = summary.get("points_failed", 0) + summary.get("groups_failed", 0) + summary.get("evals_failed", 0)
            status = "success" if summary and not failed and not self._groups_with_status("planned") else "failed"
        self._write("run", {"status": status, "finished_at": _iso(finished_at or datetime.now().astimezone())})
        return status

    def _groups_with_status(self, status: str) -> int:
        from sqlalchemy import func, select

        from infersweep.store.models import Run, ServeGroupRow

        r, g = Run.__table__, ServeGroupRow.__table__
        stmt = (select(func.count()).select_from(g).join(r, r.c.id == g.c.run_pk)
                .where(r.c.dag_id == self.dag_id, r.c.run_id == self.run_id, g.c.status == status))
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def record_group(
        self,
        group: ServeGroup | Mapping[str, Any],
        *,
        recipe: Recipe | Mapping[str, Any] | None = None,
        recipe_fingerprint: str | None = None,
        status: str | None = None,
        node: str | None = None,
        memory_verdict: Mapping[str, Any] | None = None,
        model_load_s: float | None = None,
        engine: str | None = None,
        engine_version: str | None = None,
        image_digest: str | None = None,
        failure: FailureClass | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Create/update a serve group; only the fields given are changed on later calls."""
        g = group.model_dump(mode="json") if isinstance(group, ServeGroup) else dict(group)
        recipe_json = recipe.to_json() if isinstance(recipe, Recipe) else (dict(recipe) if recipe else None)
        if recipe_fingerprint is None and isinstance(recipe, Recipe):
            recipe_fingerprint = recipe.fingerprint()
        data = {
            "group_id": g["id"], "config_key": g.get("config_key"), "model": g.get("model"),
            "model_prefix": g.get("model_prefix"), "precision": g.get("precision"),
            "framework": g.get("framework"), "runner": g.get("runner"), "isl": g.get("isl"), "osl": g.get("osl"),
            "tp": g.get("tp"), "ep": g.get("ep"), "dp_attn": g.get("dp_attn"), "pp": g.get("pp"),
            "dcp_size": g.get("dcp_size"), "pcp_size": g.get("pcp_size"), "spec_decoding": g.get("spec_decoding"),
            "router": g.get("router"), "kv_p2p_transfer": g.get("kv_p2p_transfer"), "pools": g.get("pools") or None,
            "max_model_len": g.get("max_model_len"), "image": g.get("image"),
            "concs": list(g["concs"]) if g.get("concs") is not None else None,
            "n_points": len(g["concs"]) if g.get("concs") is not None else None,
            "eval_concs": list(g["eval_concs"]) if g.get("eval_concs") is not None else None,
            "recipe": recipe_json, "recipe_fingerprint": recipe_fingerprint, "status": status, "node": node,
            "memory_verdict": dict(memory_verdict) if memory_verdict is not None else None,
            "model_load_s": model_load_s, "engine": engine, "engine_version": engine_version,
            "image_digest": image_digest, "failure_kind": failure.kind if failure else None,
            "started_at": _iso(started_at), "finished_at": _iso(finished_at),
        }
        self._write("group", _drop_none(data) | {"group_id": g["id"]})

    def record_attempt(
        self,
        *,
        task_id: str,
        try_number: int,
        status: str,
        group_id: str | None = None,
        map_index: int = -1,
        node: str | None = None,
        error: BaseException | str | None = None,
        failure: FailureClass | None = None,
        log_ref: str | None = None,
        started_at: datetime | None = None,
        ended_at: datetime | None = None,
    ) -> FailureClass | None:
        """Record one task try; a failed try is classified (from `error`) unless `failure` is given."""
        if error is not None and failure is None:
            failure = classify(error)
        message = redact(str(error))[-MESSAGE_CAP:] if error is not None else None
        self._write("attempt", _drop_none({
            "task_id": task_id, "try_number": try_number, "status": status, "group_id": group_id,
            "map_index": map_index, "node": node, "failure_kind": failure.kind if failure else None,
            "transient": failure.transient if failure else None, "message": message, "log_ref": log_ref,
            "started_at": _iso(started_at), "ended_at": _iso(ended_at),
        }) | {"map_index": map_index})
        return failure

    def record_benchmark(
        self,
        *,
        group_id: str,
        isl: int,
        osl: int,
        conc: int,
        result: PointResult | None = None,
        error: BaseException | str | None = None,
        failure: FailureClass | None = None,
        engine: str | None = None,
        image: str | None = None,
        image_digest: str | None = None,
        recipe_fingerprint: str | None = None,
        engine_version: str | None = None,
        config_key: str | None = None,
        gpus: int | None = None,
        measured_at: datetime | None = None,
        intervals: Mapping[str, Any] | None = None,
        repeats: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Record one point. A point with `error` (or a failed `result`) is stored as a failed row.

        `intervals` (metric → {lo, hi, level, method, n}) and `repeats` (each repeat's metrics and raw JSON)
        come with a point measured with confidence intervals or several times on one server."""
        cols = point_columns(result, gpus=gpus) if result is not None else {}
        if intervals:
            cols["intervals"] = dict(intervals)
        if repeats:
            cols["repeats"] = [dict(r) for r in repeats]
        failed = error is not None or (result is not None and not result.ok)
        if error is None and result is not None and not result.ok:
            error = result.error or "failed point"
        if failed and failure is None:
            failure = classify(error if error is not None else "failed point")
        data = {
            "group_id": group_id, "isl": isl, "osl": osl, "conc": conc, "engine": engine, "image": image,
            "image_digest": image_digest, "recipe_fingerprint": recipe_fingerprint,
            "engine_version": engine_version, "config_key": config_key, "gpus": gpus,
            "measured_at": _iso(measured_at or datetime.now().astimezone()),
            **cols,
            "status": "failed" if failed else "ok",
            "failure_kind": failure.kind if failure and failed else None,
            "error": redact(str(error))[-MESSAGE_CAP:] if failed else None,
            "reused_from_id": None, "reused_from_run_pk": None,
        }
        self._write("benchmark", {k: v for k, v in data.items()
                                  if v is not None or k in {"failure_kind", "error", "reused_from_id",
                                                            "reused_from_run_pk"}})

    def set_planned_points(self, group_id: str, n: int) -> None:
        """The points a group is meant to measure in this run, once a policy (adaptive, SLO search) skipped
        some: run summaries and the verdict count against it."""
        self._write("group", {"group_id": group_id, "n_points": n})

    def record_decision(
        self, *, group_id: str, isl: int, osl: int, conc: int, policy: str, action: str, reason: str, seq: int = 0,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Record why a sweep policy measures or skips a point (`conc` 0: the whole group)."""
        self._write("decision", {"group_id": group_id, "isl": isl, "osl": osl, "conc": conc, "policy": policy,
                                 "action": action, "reason": redact(reason)[-MESSAGE_CAP:], "seq": seq,
                                 "detail": dict(detail) if detail else None})

    def record_eval(
        self,
        *,
        group_id: str,
        task: str,
        conc: int,
        result: Mapping[str, Any],
        samples: Sequence[Mapping[str, Any]] | None = None,
        error: BaseException | str | None = None,
        engine: str | None = None,
        image_digest: str | None = None,
        recipe_fingerprint: str | None = None,
        measured_at: datetime | None = None,
    ) -> None:
        """Record an eval result (n, strict, flexible, stderrs, threshold, passed) and its samples."""
        passed = result.get("passed")
        status = "failed" if error is not None else "ok"
        failure_kind = classify(error).kind if error is not None else (
            "accuracy_below_threshold" if passed is False else None)
        data = {
            "group_id": group_id, "task": task, "conc": conc, "engine": engine, "image_digest": image_digest,
            "recipe_fingerprint": recipe_fingerprint, "measured_at": _iso(measured_at or datetime.now().astimezone()),
            "isl": result.get("isl"), "osl": result.get("osl"), "n": result.get("n"),
            "strict": result.get("strict"), "flexible": result.get("flexible"),
            "strict_stderr": result.get("strict_stderr"), "flexible_stderr": result.get("flexible_stderr"),
            "threshold": result.get("threshold"), "passed": passed,
            "metrics": dict(result.get("metrics") or {}) or None, "raw": result.get("raw"),
            "status": status, "failure_kind": failure_kind,
            "error": redact(str(error))[-MESSAGE_CAP:] if error is not None else None,
            "samples": [_sample(s) for s in samples or ()],
        }
        self._write("eval", {k: v for k, v in data.items() if v is not None or k in {"failure_kind", "error"}})

    def record_server_log(
        self, *, group_id: str, text: str, try_number: int = 1, source: str = "server", node: str | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        """Store a server log: redacted, capped (head + tail with a marker) and zlib-compressed."""
        packed = pack_log(text, max_bytes=max_bytes)
        self._write("server_log", _drop_none({
            "group_id": group_id, "try_number": try_number, "source": source, "node": node, "codec": packed.codec,
            "original_bytes": packed.original_bytes, "stored_bytes": packed.stored_bytes,
            "truncated": packed.truncated, "sha256": packed.sha256,
            "content_b64": base64.b64encode(packed.content).decode("ascii"),
        }))

    def fail_group(self, group_id: str, error: BaseException | str, *, concs: Sequence[int],
                   isl: int, osl: int, done: Sequence[int] = ()) -> FailureClass:
        """Mark a group failed and write a failed row for each of its points without a result."""
        failure = classify(error)
        self.record_group({"id": group_id}, status="failed", failure=failure)
        for conc in concs:
            if conc not in done:
                self.record_benchmark(group_id=group_id, isl=isl, osl=osl, conc=conc, error=error, failure=failure)
        return failure

    # ------------------------------------------------------------------ reuse
    def plan_reuse(
        self,
        group: ServeGroup,
        *,
        recipe_fingerprint: str,
        image_digest_or_tag: str,
        backend: str,
        force: bool = False,
        task: str = "gsm8k",
    ) -> ReusePlan:
        """Which points/evals of `group` are already done for this recipe + image; copies them into this run.

        With `force=True` nothing is reused. Call after `record_group` so the copies have a group to join.
        """
        if force:
            return ReusePlan(set(), list(group.concs), set(), list(group.eval_concs))
        self.flush()
        done = completed_points(self.engine, recipe_fingerprint=recipe_fingerprint,
                                image_digest_or_tag=image_digest_or_tag, isl=group.isl, osl=group.osl,
                                backend=backend) & set(group.concs)
        done_eval = completed_evals(self.engine, recipe_fingerprint=recipe_fingerprint,
                                    image_digest_or_tag=image_digest_or_tag, task=task,
                                    backend=backend) & set(group.eval_concs)
        copied: dict[str, int] = {}
        if done or done_eval:
            with write_transaction(self.engine) as conn:
                pk = run_pk(conn, self.dag_id, self.run_id)
                gpk = group_row(conn, pk, group.id, group.config_key)["id"]
                copied = copy_latest(conn, target_run_pk=pk, target_group_pk=gpk,
                                     recipe_fingerprint=recipe_fingerprint,
                                     image_digest_or_tag=image_digest_or_tag, isl=group.isl, osl=group.osl,
                                     concs=done, eval_concs=done_eval, task=task, backend=backend)
        return ReusePlan(done, [c for c in group.concs if c not in done], done_eval,
                         [c for c in group.eval_concs if c not in done_eval], copied)

    def record_server(self, group_id: str, state: Mapping[str, Any] | None) -> None:
        """The group's current server (handle, node, lease) on its row, or None once it is gone: a task
        retried on another worker finds a replacement server and a renewed lease there."""
        self._write("group", {"group_id": group_id, "server": dict(state) if state is not None else None})

    def current_server(self, group_id: str) -> dict[str, Any] | None:
        """What `record_server` last stored for this run's group (None if nothing, or once cleared)."""
        from sqlalchemy import select

        from infersweep.store.models import Run, ServeGroupRow

        self.flush()
        r, g = Run.__table__, ServeGroupRow.__table__
        stmt = (select(g.c.server).join(r, r.c.id == g.c.run_pk)
                .where(r.c.dag_id == self.dag_id, r.c.run_id == self.run_id, g.c.group_id == group_id))
        with self.engine.connect() as conn:
            value = conn.execute(stmt).scalar_one_or_none()
        return dict(value) if value else None

    def finished_points(self, group_id: str) -> set[int]:
        """Concurrencies of this run's group that already have a successful row (retry resumes after them)."""
        from sqlalchemy import select

        from infersweep.store.models import BenchmarkResult, Run, ServeGroupRow

        self.flush()
        b, r, g = BenchmarkResult.__table__, Run.__table__, ServeGroupRow.__table__
        stmt = (select(b.c.conc).join(r, r.c.id == b.c.run_pk).join(g, g.c.id == b.c.group_pk)
                .where(r.c.dag_id == self.dag_id, r.c.run_id == self.run_id, g.c.group_id == group_id,
                       b.c.status == "ok"))
        with self.engine.connect() as conn:
            return {int(c) for c in conn.execute(stmt).scalars()}

    def waiting_groups(self, runner: str) -> int:
        """How many of this run's groups for `runner` have not started a server yet (status `planned`)."""
        from sqlalchemy import func, select

        from infersweep.store.models import Run, ServeGroupRow

        self.flush()
        r, g = Run.__table__, ServeGroupRow.__table__
        stmt = (select(func.count()).select_from(g).join(r, r.c.id == g.c.run_pk)
                .where(r.c.dag_id == self.dag_id, r.c.run_id == self.run_id, g.c.runner == runner,
                       g.c.status == "planned"))
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    # ------------------------------------------------------------------ read side
    def summary(self) -> dict[str, Any]:
        """This run's summary row (`label` like "53/55 green"), or {} if the run is unknown."""
        rows = run_summary(self.engine, dag_id=self.dag_id, run_id=self.run_id, limit=1)
        return rows[0] if rows else {}

    def failures(self) -> list[dict[str, Any]]:
        """This run's failure breakdown by class."""
        return failure_breakdown(self.engine, dag_id=self.dag_id, run_id=self.run_id)


def _sample(s: Mapping[str, Any]) -> dict[str, Any]:
    known = {"doc_id", "target", "response", "strict_answer", "flexible_answer", "strict_correct",
             "flexible_correct"}
    out = {k: s[k] for k in known if k in s}
    extra = {k: v for k, v in s.items() if k not in known}
    out["data"] = extra or None
    return out
