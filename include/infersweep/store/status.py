"""Where the running sweeps are: which serve group holds which node, its points done and left, its elapsed and
estimated time (`infersweep status`, and the demo's progress lines).

Everything comes from rows the tasks already write as they go: the run and its serve groups, one attempt row
per finished task try (a try waiting for a node is `waiting`), one result row per point as it finishes, and the
node leases. Nothing is sampled from Airflow, so the same view works under `dag.test()`, the scheduler, and on
a read-only copy of the store.

The estimate is the pace of this run so far: a point's time is the wall time since the previous point of its
group (the first one: since the group's warm-up finished), so it includes what a point really costs between
two rows. A group's time left is its points left × its own mean seconds per point, or the run's mean while it
has none; the run's is the groups' sum shared among the nodes held now, and never less than the longest
group's. Nothing measured yet: no estimate (None, shown "?"). Server boots and evals still to come are not in
it: they have no per-point pace.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, select

from infersweep.store.models import (
    Attempt,
    BenchmarkResult,
    EvalResult,
    NodeLeaseRow,
    Run,
    ServeGroupRow,
    utcnow,
)

Stage = Literal["planned", "waiting", "serve", "benchmark", "eval", "done", "failed", "reused"]
#: The serve group's chain (`serve_group.<task>`), in order; `warmup` belongs to the benchmark stage.
_STAGE_TASK = {"serve": "serve", "benchmark": "benchmark", "eval": "evaluate"}
_AFTER_SERVE = {"warmup", "benchmark", "evaluate", "stop"}


_TERMINAL = {"done", "failed", "reused"}


@dataclass
class _Partial:
    """A group while its run is assembled (the run's pace is known only once every group is read)."""

    group: Mapping[str, Any]
    held_node: str | None
    points_done: int
    points_failed: int
    evals_done: int
    pace: float | None
    stage: Stage = "planned"
    trail: str = ""
    kind: str | None = None
    started: datetime | None = None
    finished: datetime | None = None


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeaseStatus(_Frozen):
    """A lease not released yet, and who holds it."""

    node: str
    runner: str
    holder: str
    dag_id: str | None
    run_id: str | None
    group_id: str | None
    try_number: int | None
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    #: Past its expiry without a heartbeat: the reaper will take the node back (its holder stopped).
    expired: bool


class GroupStatus(_Frozen):
    """One serve group of a run: where it is in its chain, and how much is left."""

    group_id: str
    label: str
    status: str
    stage: Stage
    #: The stages reached, e.g. "serve → benchmark 3/4 → eval".
    trail: str
    node: str | None
    failure_kind: str | None
    points_total: int
    points_done: int
    points_failed: int
    points_left: int
    evals_total: int
    evals_done: int
    started_at: datetime | None
    finished_at: datetime | None
    elapsed_s: float | None
    s_per_point: float | None
    eta_s: float | None


class RunStatus(_Frozen):
    """One sweep run and its groups."""

    dag_id: str
    run_id: str
    config_key: str | None
    status: str
    started_at: datetime | None
    elapsed_s: float | None
    last_activity_at: datetime | None
    points_total: int
    points_done: int
    points_failed: int
    points_left: int
    s_per_point: float | None
    #: Groups of this run holding a node now (measuring in parallel).
    parallel: int
    eta_s: float | None
    groups: list[GroupStatus]


class SweepStatus(_Frozen):
    """The running sweeps and the leases held, as of `now`."""

    now: datetime
    runs: list[RunStatus]
    leases: list[LeaseStatus]


def _task(task_id: str) -> str:
    return task_id.rsplit(".", 1)[-1]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return max((end - start).total_seconds(), 0.0) if start is not None and end is not None else None


def group_label(group: Mapping[str, Any]) -> str:
    """The group's topology in a few characters: "4096/256 tp2 ep4 dep pp2", or a multinode group's pools:
    "4096/256 1p-tp8+2d-tp8"."""
    if group.get("pools"):
        from infersweep.plan.models import pools_label

        return f"{group.get('isl')}/{group.get('osl')} {pools_label(group['pools'])}"
    parts = [f"{group.get('isl')}/{group.get('osl')}", f"tp{group.get('tp') or 1}"]
    if (group.get("ep") or 1) > 1:
        parts.append(f"ep{group['ep']}")
    if group.get("dp_attn"):
        parts.append("dep")
    if (group.get("pp") or 1) > 1:
        parts.append(f"pp{group['pp']}")
    return " ".join(parts)


def _waiting_for(group: Mapping[str, Any]) -> str:
    """"waiting for a node", or for a multinode group the whole set it leases at once."""
    if not group.get("pools"):
        return "waiting for a node"
    from infersweep.plan.models import WorkerPool

    nodes = sum(WorkerPool.model_validate(p).nodes for p in group["pools"])
    return f"waiting for {nodes} nodes (all at once)"


def point_durations(points: Iterable[Mapping[str, Any]], warmups_ended: Iterable[datetime]) -> list[float]:
    """Seconds each point measured in this run took: since the group's previous point, or, for the first, since
    its warm-up ended. Reused points (copied from an earlier run) took no time here and are left out."""
    own = sorted(p["measured_at"] for p in points if p.get("reused_from_id") is None and p.get("measured_at"))
    anchors = sorted([*own, *warmups_ended])
    out = []
    for t in own:
        i = bisect.bisect_left(anchors, t)
        if i > 0:
            out.append((t - anchors[i - 1]).total_seconds())
    return out


def _trail(group: Mapping[str, Any], attempts: Sequence[Mapping[str, Any]], *, points_done: int,
           points_failed: int, measured_here: int, evals_done: int, holding: bool) -> tuple[Stage, str, str | None]:
    """The stage the group reached, its trail, and the failure class when it failed."""
    status = group["status"]
    if status == "reused":
        return "reused", "reused (every point measured before)", None
    tasks = {_task(a["task_id"]) for a in attempts}
    ok = {_task(a["task_id"]) for a in attempts if a["status"] == "success"}
    failed = [a for a in attempts if a["status"] == "failed"]
    kind = group.get("failure_kind") or (max(failed, key=lambda a: a["ended_at"] or a["started_at"])["failure_kind"]
                                         if failed else None)
    terminal = status in {"done", "failed"}
    # A serve try that ended `waiting` found no free node; one that succeeded or failed had one.
    tried_serve = any(_task(a["task_id"]) == "serve" and a["status"] != "waiting" for a in attempts)
    served = status == "serving" or holding or tried_serve or bool(tasks & _AFTER_SERVE)
    if not served and not terminal:
        waiting = any(_task(a["task_id"]) == "serve" and a["status"] == "waiting" for a in attempts)
        return ("waiting", _waiting_for(group), None) if waiting else ("planned", "planned", None)
    stage: Stage = "serve"
    parts = ["serve"] if served else []
    if "warmup" in ok or "benchmark" in tasks or measured_here:
        stage = "benchmark"
        parts.append(f"benchmark {points_done}/{group['n_points'] or 0}"
                     + (f" ({points_failed} failed)" if points_failed else ""))
    evals_total = len(group.get("eval_concs") or [])
    if evals_total and ("benchmark" in ok or "evaluate" in tasks or evals_done):
        stage = "eval"
        parts.append("eval" if evals_total == 1 else f"eval {evals_done}/{evals_total}")
    if terminal:
        # The teardown marks a group `done` even when its benchmark or eval gave up: that group failed.
        gave_up = {_task(a["task_id"]) for a in failed} - ok - {"stop", "download"}
        if status == "done" and not gave_up:
            return "done", " → ".join([*parts, "done"]), None
        return "failed", " → ".join([*parts, f"failed ({kind or 'unknown'})"]), kind or "unknown"
    # A stage whose task failed a try is being retried: say which try is on.
    tries = [a["try_number"] for a in failed if _task(a["task_id"]) in {_STAGE_TASK[stage], "warmup"}]
    if tries:
        parts[-1] += f" (try {max(tries) + 1}, after {kind})"
    return stage, " → ".join(parts), None


def build_run(run: Mapping[str, Any], groups: Sequence[Mapping[str, Any]], attempts: Sequence[Mapping[str, Any]],
              points: Sequence[Mapping[str, Any]], evals: Sequence[Mapping[str, Any]],
              leases: Sequence[Mapping[str, Any]], now: datetime) -> RunStatus:
    """One run's status from its rows (pure: rows in, model out). `attempts`, `points` and `evals` carry
    `group_pk`; `leases` are this run's lease rows (held or not), matched to groups by `holder_group`."""
    by_group: dict[int | None, dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for kind, of_kind in (("attempts", attempts), ("points", points), ("evals", evals)):
        for row in of_kind:
            by_group[row["group_pk"]][kind].append(row)
    leases_of: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for lease in leases:
        leases_of[lease["holder_group"]].append(lease)

    staged: list[_Partial] = []
    pooled: list[float] = []
    for g in sorted(groups, key=lambda g: g["id"]):
        rows = by_group[g["id"]]
        own_leases = leases_of[g["group_id"]]
        held = [x for x in own_leases if x["released_at"] is None]
        done_points = rows["points"]
        warmed = [a["ended_at"] for a in rows["attempts"]
                  if _task(a["task_id"]) == "warmup" and a["status"] == "success" and a["ended_at"]]
        durations = point_durations(done_points, warmed)
        pooled.extend(durations)
        # A multinode group holds its whole set: every node is named ("n1+n2+n3").
        held_nodes = "+".join(sorted(x["node"] for x in held)) if held else None
        part = _Partial(group=g, held_node=held_nodes, points_done=len(done_points),
                        points_failed=sum(1 for p in done_points if p["status"] == "failed"),
                        evals_done=len({e["conc"] for e in rows["evals"]}), pace=_mean(durations))
        part.stage, part.trail, part.kind = _trail(
            g, rows["attempts"], points_done=part.points_done, points_failed=part.points_failed,
            measured_here=sum(1 for p in done_points if p.get("reused_from_id") is None),
            evals_done=part.evals_done, holding=bool(held))
        starts = [x["acquired_at"] for x in own_leases] + [
            a["started_at"] for a in rows["attempts"] if a["started_at"] and _task(a["task_id"]) != "download"]
        part.started = min(starts, default=None)
        if part.stage in _TERMINAL:
            ends = [a["ended_at"] for a in rows["attempts"] if a["ended_at"]] + [
                x["released_at"] for x in own_leases if x["released_at"]]
            part.finished = g.get("finished_at") or max(ends, default=None)
        staged.append(part)

    run_pace = _mean(pooled)
    parallel = sum(1 for p in staged if p.held_node)
    out_groups = []
    for p in staged:
        g = p.group
        total = int(g["n_points"] or 0)
        left = 0 if p.stage in _TERMINAL else max(total - p.points_done, 0)
        per_point = p.pace if p.pace is not None else run_pace
        out_groups.append(GroupStatus(
            group_id=g["group_id"], label=group_label(g), status=g["status"], stage=p.stage, trail=p.trail,
            node=p.held_node, failure_kind=p.kind, points_total=total, points_done=p.points_done,
            points_failed=p.points_failed, points_left=left, evals_total=len(g.get("eval_concs") or []),
            evals_done=p.evals_done, started_at=p.started, finished_at=p.finished,
            elapsed_s=_seconds(p.started, p.finished or now), s_per_point=p.pace,
            eta_s=0.0 if left == 0 else (per_point * left if per_point is not None else None),
        ))

    left = sum(g.points_left for g in out_groups)
    activity = [t for t in (
        *(a["ended_at"] for a in attempts), *(p.get("measured_at") for p in points),
        *(x["heartbeat_at"] for x in leases), *(g.get("updated_at") for g in groups), run.get("updated_at"),
    ) if t is not None]
    return RunStatus(
        dag_id=run["dag_id"], run_id=run["run_id"], config_key=run.get("config_key"), status=run["status"],
        started_at=run.get("started_at"), elapsed_s=_seconds(run.get("started_at"), run.get("finished_at") or now),
        last_activity_at=max(activity, default=None),
        points_total=sum(g.points_total for g in out_groups), points_done=sum(g.points_done for g in out_groups),
        points_failed=sum(g.points_failed for g in out_groups), points_left=left, s_per_point=run_pace,
        parallel=parallel,
        eta_s=_run_eta([g.eta_s for g in out_groups if g.points_left], parallel),
        groups=out_groups,
    )


def _run_eta(group_etas: Sequence[float | None], parallel: int) -> float | None:
    """The groups' time left shared among the nodes held now, but never less than the longest group's."""
    if not group_etas:
        return 0.0
    if any(eta is None for eta in group_etas):
        return None
    etas = [eta for eta in group_etas if eta is not None]
    return max(max(etas), sum(etas) / max(parallel, 1))


def _lease_status(row: Mapping[str, Any], now: datetime) -> LeaseStatus:
    return LeaseStatus(
        node=row["node"], runner=row["runner"], holder=row["holder"], dag_id=row["holder_dag_id"],
        run_id=row["holder_run_id"], group_id=row["holder_group"], try_number=row["holder_try"],
        acquired_at=row["acquired_at"], heartbeat_at=row["heartbeat_at"], expires_at=row["expires_at"],
        expired=row["expires_at"] < now,
    )


def load_status(engine: Engine, *, now: datetime | None = None, dag_id: str | None = None,
                run_id: str | None = None, running_only: bool = True, since: datetime | None = None) -> SweepStatus:
    """The status of the sweeps in the store: the running runs (or, with `running_only=False`, every run that
    matches `dag_id` / `run_id` / recorded at or after `since`), oldest first, and the leases held (of
    `dag_id`'s runs when it is given)."""
    now = now or utcnow()
    r, g, a = Run.tbl(), ServeGroupRow.tbl(), Attempt.tbl()
    b, e, n = BenchmarkResult.tbl(), EvalResult.tbl(), NodeLeaseRow.tbl()
    stmt = select(r)
    if running_only:
        stmt = stmt.where(r.c.status == "running")
    if dag_id:
        stmt = stmt.where(r.c.dag_id == dag_id)
    if run_id:
        stmt = stmt.where(r.c.run_id == run_id)
    if since is not None:
        stmt = stmt.where(r.c.created_at >= since)
    with engine.connect() as conn:
        runs = [dict(x) for x in conn.execute(stmt.order_by(r.c.id)).mappings()]
        pks = [x["id"] for x in runs]

        def rows(*cols: Any) -> list[dict[str, Any]]:
            table = cols[0].table
            return [dict(x) for x in conn.execute(select(*cols).where(table.c.run_pk.in_(pks))).mappings()]

        groups = rows(*g.c)
        attempts = rows(a.c.run_pk, a.c.group_pk, a.c.task_id, a.c.try_number, a.c.status, a.c.failure_kind,
                        a.c.started_at, a.c.ended_at)
        points = rows(b.c.run_pk, b.c.group_pk, b.c.conc, b.c.status, b.c.measured_at, b.c.reused_from_id)
        evals = rows(e.c.run_pk, e.c.group_pk, e.c.conc, e.c.status)
        run_ids = sorted({x["run_id"] for x in runs})
        lease_stmt = select(n).where((n.c.holder_run_id.in_(run_ids)) | n.c.released_at.is_(None))
        leases = [dict(x) for x in conn.execute(lease_stmt.order_by(n.c.node, n.c.id)).mappings()]

    def of(items: list[dict[str, Any]], pk: int) -> list[dict[str, Any]]:
        return [x for x in items if x["run_pk"] == pk]

    out = [build_run(run, of(groups, run["id"]), of(attempts, run["id"]), of(points, run["id"]),
                     of(evals, run["id"]),
                     [x for x in leases if (x["holder_dag_id"], x["holder_run_id"]) == (run["dag_id"], run["run_id"])],
                     now)
           for run in runs]
    held = [_lease_status(x, now) for x in leases
            if x["released_at"] is None and (dag_id is None or x["holder_dag_id"] == dag_id)]
    return SweepStatus(now=now, runs=out, leases=held)


def fmt_duration(seconds: float | None) -> str:
    """"1h02m", "3m05s", "42s"; "?" when there is nothing to estimate from."""
    if seconds is None:
        return "?"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def render_text(status: SweepStatus) -> str:
    """The human view of `infersweep status`."""
    lines: list[str] = []
    if not status.runs:
        lines.append("no running sweeps")
    for run in status.runs:
        idle = fmt_duration(_seconds(run.last_activity_at, status.now)) if run.last_activity_at else "?"
        lines.append(f"{run.dag_id}  {run.run_id}  {run.status}  elapsed {fmt_duration(run.elapsed_s)}, "
                     f"last activity {idle} ago")
        pace = f"{run.s_per_point:.1f} s/point" if run.s_per_point is not None else "no point measured yet"
        lines.append(f"  points {run.points_done}/{run.points_total} done ({run.points_failed} failed), "
                     f"{run.points_left} left; {pace}; estimated {fmt_duration(run.eta_s)} left")
        header = f"  {'group':<14}{'topology':<20}{'node':<16}{'points':>8}{'elapsed':>9}{'left':>8}  progress"
        lines.append(header)
        for g in run.groups:
            lines.append(f"  {g.group_id:<14}{g.label:<20}{g.node or '-':<16}"
                         f"{f'{g.points_done}/{g.points_total}':>8}"
                         f"{fmt_duration(g.elapsed_s) if g.started_at else '-':>9}{fmt_duration(g.eta_s):>8}"
                         f"  {g.trail}")
    if status.leases:
        lines.append("nodes held:")
        for x in status.leases:
            who = f"{x.dag_id}/{x.run_id}/{x.group_id} try{x.try_number}" if x.group_id else x.holder
            state = "EXPIRED (holder stopped heartbeating)" if x.expired else f"expires {x.expires_at:%H:%M:%S}"
            lines.append(f"  {x.node:<16} {who}  since {x.acquired_at:%H:%M:%S} UTC, {state}")
    return "\n".join(lines)
