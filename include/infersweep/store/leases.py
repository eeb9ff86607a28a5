"""Node leases: the real mutex for GPU nodes (an Airflow pool slot is held per task, not per chain).

A serve group leases every node it needs at once: `acquire_leases(demand={"h100": 2, "b200": 1})` books all
of them in ONE transaction or none, and the leases share a `set_id` so heartbeat, release and expiry act on
the whole set (`acquire_lease` is the one-node case). A partial unique index (one row with
`released_at IS NULL` per node) makes a double booking impossible even if the logic were wrong. Lease rows
are never deleted, so the history proves who held which node when.

Fairness (no starvation of big groups behind a stream of small ones): a request that cannot be served is
recorded in `lease_requests` and keeps its place (first request time) while it polls. Free nodes are first
earmarked for older live requests, oldest first, each up to its demand per runner label; a request may only
take what is left after the requests ahead of it (conservative backfill). A waiter that stops polling for
`wait_ttl_s` (default 3 × ttl_s) is ignored and dropped, so a dead waiter never blocks the queue. The queue
key is the holder without its try number, so a retried serve task keeps its place.

Why it cannot deadlock:
- No hold-and-wait across transactions: a request holds no node while it waits (all or none), so there is
  no cycle of groups each holding part of what another needs.
- Within a transaction, SQLite takes its single write lock up front (`BEGIN IMMEDIATE`). On Postgres an
  acquirer first locks the node rows of its runner labels in one statement, `ORDER BY name FOR UPDATE`: every
  acquirer takes node locks in the same global order and before any other lock, so no cycle can form. The
  request rows an acquirer writes are those whose labels it has locked (its own, and dead ones it drops,
  skipping any row locked elsewhere), so those writes never wait on another acquirer.
- Multi-row updates of lease rows (`heartbeat_all`, `release_all`, `expire_stale`, dropping a partial set)
  lock them in id order first; single-row updates hold one row. No statement waits for a node lock while
  holding a lease-row lock.

A lease whose holder stopped heartbeating is *not* taken over by an acquirer: its orphan server may still
hold the GPUs. The reaper calls `expire_stale` (which expires a stale lease's whole set), removes the
containers of the leases it returns, and the nodes become free.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy import exc as sa_exc

from infersweep.config.inventory import Node
from infersweep.faults.errors import InfersweepError
from infersweep.store.db import is_postgres, write_transaction
from infersweep.store.models import LeaseRequestRow, NodeLeaseRow, NodeRow, utcnow
from infersweep.store.spool import UNAVAILABLE
from infersweep.store.upsert import upsert

log = logging.getLogger(__name__)


class LeaseLost(InfersweepError, RuntimeError):
    """The lease expired or was released: the holder must stop using the node."""

    kind = "lease_lost"
    transient = True


class LeaseHolder(BaseModel):
    """Who holds a lease: a DAG run's serve group at one task try."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dag_id: str
    run_id: str
    group_id: str
    try_number: int = 1

    def __str__(self) -> str:
        return f"{self.dag_id}/{self.run_id}/{self.group_id}/try{self.try_number}"


class NodeLease(BaseModel):
    """A lease as handed to the DAG (JSON-serialisable for XCom)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    node: str
    runner: str
    holder: str
    token: str
    acquired_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    released_at: datetime | None = None
    release_reason: str | None = None
    #: Shared by the leases of one group (taken all or none); None for leases older than migration 0005.
    set_id: str | None = None

    def node_spec(self, nodes: Sequence[Node]) -> Node:
        """The inventory entry of the leased node."""
        for n in nodes:
            if n.name == self.node:
                return n
        raise KeyError(f"leased node {self.node!r} is not in the given inventory")


def _lease(row: NodeLeaseRow | object) -> NodeLease:
    mapping = getattr(row, "_mapping", None)
    data = dict(mapping) if mapping is not None else {c: getattr(row, c) for c in NodeLease.model_fields}
    return NodeLease(**{k: data[k] for k in NodeLease.model_fields})


def _node_values(n: Node) -> dict[str, object]:
    return {"name": n.name, "runner": n.runner, "gpus": n.gpus, "docker_url": n.docker_url,
            "spec": n.model_dump(mode="json", by_alias=False), "enabled": True}


def register_nodes(engine: Engine, nodes: Sequence[Node]) -> None:
    """Upsert the inventory's nodes (name, runner, GPUs, docker URL, full spec); unchanged rows are not touched.

    Skipping unchanged rows matters on Postgres: an upsert row-locks the node and would make acquirers of
    that label wait. Changed rows are written in name order, the order acquirers lock them in (no deadlock).
    """
    wanted = {n.name: _node_values(n) for n in nodes}
    cols = ("name", "runner", "gpus", "docker_url", "spec")
    with engine.connect() as conn:
        have = {r.name: dict(r._mapping) for r in conn.execute(
            select(*(NodeRow.tbl().c[c] for c in cols)).where(NodeRow.name.in_(list(wanted)))
        )}
    changed = [v for name, v in sorted(wanted.items()) if have.get(name) != {c: v[c] for c in cols}]
    if not changed:
        return
    with write_transaction(engine) as conn:
        for values in changed:
            # `enabled` is set on insert only: a drained node stays drained when its spec changes.
            upsert(conn, NodeRow, values, key=("name",), update=set(cols) - {"name"})


def set_node_enabled(engine: Engine, name: str, enabled: bool) -> bool:
    """Drain (False) or return (True) a node: a drained node gets no new leases. True if the node exists."""
    table = NodeRow.tbl()
    with write_transaction(engine) as conn:
        result = conn.execute(update(table).where(table.c.name == name).values(enabled=enabled, updated_at=utcnow()))
    return bool(result.rowcount)


def acquire_lease(
    engine: Engine,
    *,
    runner: str,
    holder: LeaseHolder | str,
    ttl_s: float,
    nodes: Sequence[Node],
    now: datetime | None = None,
    attempts: int = 5,
    wait_ttl_s: float | None = None,
) -> NodeLease | None:
    """Lease one free node of `runner` among `nodes` for `ttl_s` seconds; None when none may be taken now.

    The one-node case of `acquire_leases` (same queue, same fairness). Idempotent for a holder: if `holder`
    already has its lease, that lease is returned (a retried serve task does not book a second node).
    """
    leases = acquire_leases(engine, demand={runner: 1}, holder=holder, ttl_s=ttl_s, nodes=nodes, now=now,
                            attempts=attempts, wait_ttl_s=wait_ttl_s)
    return leases[0] if leases else None


def queue_key(holder: LeaseHolder | str) -> str:
    """The holder's key in the lease queue: a `LeaseHolder` without its try number (a retried task keeps its
    place), a plain string as is."""
    if isinstance(holder, LeaseHolder):
        return f"{holder.dag_id}/{holder.run_id}/{holder.group_id}"
    return holder


def _check_demand(demand: Mapping[str, int]) -> dict[str, int]:
    if not demand:
        raise ValueError("lease demand is empty: give at least one runner label and a node count")
    for runner, count in demand.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"lease demand for runner label {runner!r} must be an integer >= 1, got {count!r}")
    return dict(sorted(demand.items()))


def acquire_leases(
    engine: Engine,
    *,
    demand: Mapping[str, int],
    holder: LeaseHolder | str,
    ttl_s: float,
    nodes: Sequence[Node],
    now: datetime | None = None,
    attempts: int = 5,
    wait_ttl_s: float | None = None,
    enqueue: bool = True,
) -> list[NodeLease] | None:
    """Lease `demand[label]` free nodes of each runner label among `nodes`, all in one transaction, or none.

    Returns the leases (sorted by node name, sharing one `set_id`), or None when the request may not be
    served now: not enough free nodes, or free nodes earmarked for older waiting requests. A refused request
    is recorded in the queue (unless `enqueue` is False) and keeps its place while it polls again within
    `wait_ttl_s` (default 3 × `ttl_s`; it must exceed the caller's longest poll interval).

    Idempotent per holder: if `holder` already holds exactly this demand, those leases are returned. A holder
    never keeps a partial or different set: any other active lease of the holder is released (reason
    `partial`) in the same transaction, before the full set is acquired.

    Raises ValueError when the demand can never be served: a label with no node in `nodes`, or more nodes
    asked than the label has enabled (drained nodes are never leased).
    """
    want = _check_demand(demand)
    if ttl_s <= 0:
        raise ValueError("ttl_s must be > 0")
    wait_ttl = 3 * ttl_s if wait_ttl_s is None else wait_ttl_s
    if wait_ttl <= 0:
        raise ValueError("wait_ttl_s must be > 0")
    candidates = [n for n in nodes if n.runner in want]
    for runner in want:
        if not any(n.runner == runner for n in candidates):
            raise ValueError(f"no node in the inventory has runner label {runner!r}")
    register_nodes(engine, candidates)
    request = _Request(want=want, holder=holder, holder_text=str(holder), key=queue_key(holder), ttl_s=ttl_s,
                       wait_ttl_s=wait_ttl, names={n.name for n in candidates}, now=now, enqueue=enqueue)
    for _ in range(attempts):
        try:
            outcome = _try_acquire(engine, request)
        except sa_exc.IntegrityError:
            # A concurrent writer beat us to a row (e.g. two tries of one group inserting the same queue key):
            # the transaction rolled back whole; try again.
            continue
        if isinstance(outcome, _Impossible):
            raise ValueError(outcome.message)
        return outcome
    return None


@dataclass(frozen=True)
class _Request:
    want: dict[str, int]
    holder: LeaseHolder | str
    holder_text: str
    key: str
    ttl_s: float
    wait_ttl_s: float
    names: set[str]
    now: datetime | None
    enqueue: bool


@dataclass(frozen=True)
class _Impossible:
    message: str


def _try_acquire(engine: Engine, req: _Request) -> list[NodeLease] | _Impossible | None:
    lease, queue = NodeLeaseRow.tbl(), LeaseRequestRow.tbl()
    labels = sorted(req.want)
    with write_transaction(engine, exclusive=True) as conn:
        postgres = is_postgres(conn)
        # First statement, before any other lock: the node rows of our labels, in name order (module docstring).
        stmt = select(NodeRow.name, NodeRow.runner, NodeRow.enabled).where(NodeRow.runner.in_(labels))
        stmt = stmt.order_by(NodeRow.name)
        if postgres:
            stmt = stmt.with_for_update(of=NodeRow.tbl())
        label_nodes = conn.execute(stmt).all()
        requests = conn.execute(select(queue).order_by(queue.c.first_requested_at, queue.c.id)).all()
        own = next((r for r in requests if r.queue_key == req.key), None)
        mine = conn.execute(
            select(lease).where(lease.c.holder == req.holder_text, lease.c.released_at.is_(None))
            .order_by(lease.c.id)
        ).all()
        busy = set(conn.execute(
            select(lease.c.node).where(lease.c.released_at.is_(None),
                                       lease.c.node.in_([r.name for r in label_nodes]))
        ).scalars())
        # Timestamp taken after the reads that found the nodes free: a release we saw committed was stamped
        # earlier, so history intervals never overlap.
        t = req.now or utcnow()

        if mine and _is_full_set(mine, req.want):
            if own is not None:
                conn.execute(delete(queue).where(queue.c.id == own.id))
            return sorted((_lease(r) for r in mine), key=lambda x: x.node)
        impossible = _impossible(req, label_nodes)
        if impossible is not None:
            if own is not None:  # an impossible request must not keep earmarking nodes until it goes stale
                conn.execute(delete(queue).where(queue.c.id == own.id))
            return _Impossible(message=impossible)
        if mine:
            # Never a partial (or different) set: give it back before booking the full one.
            log.warning("holder %s held %d lease(s) not matching its demand %s; releasing them",
                        req.holder_text, len(mine), req.want)
            _set_released(conn, [r.id for r in mine], t, "partial")
            busy -= {r.node for r in mine}

        free: dict[str, list[str]] = {r: [] for r in labels}
        for row in label_nodes:
            if row.enabled and row.name not in busy:
                free[row.runner].append(row.name)

        live = [r for r in requests if r.expires_at >= t]
        own_live = own is not None and own.expires_at >= t
        # Our place: our live row's, else behind every live request (a new or lapsed request queues last).
        place = (own.first_requested_at, own.id) if own is not None and own_live else None
        ahead = [r for r in live if r.queue_key != req.key
                 and (place is None or (r.first_requested_at, r.id) < place)]
        left = _left_after_earmarks(free, ahead)
        picks = {r: [n for n in free[r] if n in req.names][: req.want[r]] for r in labels}
        served = all(left[r] >= req.want[r] and len(picks[r]) == req.want[r] for r in labels)

        _drop_dead_waiters(conn, requests, t, set(labels), postgres, own_key=req.key)
        if not served:
            if req.enqueue:
                _record_waiting(conn, req, own, own_live, t)
            return None
        if own is not None:
            conn.execute(delete(queue).where(queue.c.id == own.id))
        return _insert_set(conn, req, picks, t)


def _impossible(req: _Request, label_nodes: Sequence[Any]) -> str | None:
    """Why the demand can never be served by the enabled nodes of `req.names`, or None."""
    for runner, count in req.want.items():
        mine = [r for r in label_nodes if r.runner == runner and r.name in req.names]
        enabled = sum(1 for r in mine if r.enabled)
        if count > enabled:
            return (f"lease demand for runner label {runner!r} asks {count} node(s), but the inventory has only "
                    f"{enabled} enabled node(s) of that label ({len(mine)} in total, {len(mine) - enabled} "
                    "drained): it can never be served")
    return None


def _is_full_set(rows: Sequence[Any], want: Mapping[str, int]) -> bool:
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.runner] = counts.get(r.runner, 0) + 1
    # Legacy one-node leases (no set_id) count as a set of one.
    return counts == dict(want) and len({r.set_id for r in rows}) == 1


def _left_after_earmarks(free: Mapping[str, list[str]], ahead: Sequence[Any]) -> dict[str, int]:
    """Free nodes per label left after every request ahead earmarked up to its demand, oldest first."""
    left = {r: len(names) for r, names in free.items()}
    for request in ahead:
        for runner, count in (request.demand or {}).items():
            if runner in left:
                left[runner] -= min(int(count), left[runner])
    return left


def _drop_dead_waiters(conn: Connection, requests: Sequence[Any], t: datetime, locked: set[str], postgres: bool,
                       *, own_key: str) -> None:
    """Delete requests nobody polled within their TTL. On Postgres only those whose labels we hold locked (their
    other writers then wait for us, never the reverse), skipping rows another transaction holds."""
    queue = LeaseRequestRow.tbl()
    ids = [r.id for r in requests if r.expires_at < t and r.queue_key != own_key
           and (not postgres or set(r.demand or {}) <= locked)]
    if not ids:
        return
    if postgres:
        ids = list(conn.execute(select(queue.c.id).where(queue.c.id.in_(ids)).order_by(queue.c.id)
                                .with_for_update(skip_locked=True)).scalars())
    if ids:
        conn.execute(delete(queue).where(queue.c.id.in_(ids)))


def _record_waiting(conn: Connection, req: _Request, own: Any, own_live: bool, t: datetime) -> None:
    queue = LeaseRequestRow.tbl()
    values = {"holder": req.holder_text, "demand": req.want, "last_polled_at": t,
              "expires_at": t + timedelta(seconds=req.wait_ttl_s)}
    if own is None:
        conn.execute(queue.insert().values(queue_key=req.key, first_requested_at=t, polls=1, **values))
    elif own_live:
        conn.execute(update(queue).where(queue.c.id == own.id).values(polls=own.polls + 1, **values))
    else:  # it stopped polling for longer than its TTL: it lost its place and queues again from now
        conn.execute(update(queue).where(queue.c.id == own.id).values(first_requested_at=t, polls=1, **values))


def _insert_set(conn: Connection, req: _Request, picks: Mapping[str, list[str]], t: datetime) -> list[NodeLease]:
    lease = NodeLeaseRow.tbl()
    structured = req.holder if isinstance(req.holder, LeaseHolder) else None
    set_id = str(uuid.uuid4())
    out = []
    for runner, names in picks.items():
        for node in names:
            row = conn.execute(
                lease.insert().values(
                    node=node, runner=runner, holder=req.holder_text, token=str(uuid.uuid4()), set_id=set_id,
                    holder_dag_id=structured.dag_id if structured else None,
                    holder_run_id=structured.run_id if structured else None,
                    holder_group=structured.group_id if structured else None,
                    holder_try=structured.try_number if structured else None,
                    acquired_at=t, heartbeat_at=t, expires_at=t + timedelta(seconds=req.ttl_s),
                ).returning(*lease.c)
            ).one()
            out.append(_lease(row))
    return sorted(out, key=lambda x: x.node)


def _lock_active(conn: Connection, *conditions: Any) -> list[int]:
    """Ids of the active lease rows matching `conditions`, locked in id order (deadlock-free multi-row update)."""
    lease = NodeLeaseRow.tbl()
    stmt = select(lease.c.id).where(lease.c.released_at.is_(None), *conditions).order_by(lease.c.id)
    if is_postgres(conn):
        stmt = stmt.with_for_update()
    return list(conn.execute(stmt).scalars())


def _set_released(conn: Connection, ids: Sequence[int], t: datetime, reason: str) -> list[NodeLease]:
    lease = NodeLeaseRow.tbl()
    ids = _lock_active(conn, lease.c.id.in_(list(ids))) if ids else []
    if not ids:
        return []
    rows = conn.execute(
        update(lease).where(lease.c.id.in_(ids), lease.c.released_at.is_(None))
        .values(released_at=t, release_reason=reason).returning(*lease.c)
    ).all()
    return [_lease(r) for r in rows]


def waiting_requests(engine: Engine, runner: str | None = None, *, now: datetime | None = None) -> list[LeaseRequest]:
    """Live waiting requests (polled within their TTL), oldest first; only those asking for `runner` if given.

    `position` is the 1-based place among the returned requests (with `runner`: among those that compete for
    that label), so the DAG can size its reschedule delay and a UI can show the queue.
    """
    t = now or utcnow()
    queue = LeaseRequestRow.tbl()
    with engine.connect() as conn:
        rows = conn.execute(
            select(queue).where(queue.c.expires_at >= t).order_by(queue.c.first_requested_at, queue.c.id)
        ).all()
    rows = [r for r in rows if runner is None or runner in (r.demand or {})]
    return [
        LeaseRequest(position=i, queue_key=r.queue_key, holder=r.holder,
                     demand={k: int(v) for k, v in (r.demand or {}).items()},
                     first_requested_at=r.first_requested_at, last_polled_at=r.last_polled_at,
                     expires_at=r.expires_at, polls=r.polls)
        for i, r in enumerate(rows, start=1)
    ]


def withdraw_request(engine: Engine, holder: LeaseHolder | str) -> bool:
    """Leave the lease queue (a waiting task that is cancelled or gives up), so its earmarks end now rather
    than after its waiter TTL. True if a waiting request was removed."""
    queue = LeaseRequestRow.tbl()
    with write_transaction(engine) as conn:
        result = conn.execute(delete(queue).where(queue.c.queue_key == queue_key(holder)))
    return bool(result.rowcount)


def withdraw_run(engine: Engine, dag_id: str, run_id: str) -> int:
    """Drop every waiting request of one DAG run (its last task ran: nobody of it will poll again), so its
    earmarks end now. Returns how many were removed."""
    queue = LeaseRequestRow.tbl()
    prefix = f"{dag_id}/{run_id}/"
    with write_transaction(engine) as conn:
        result = conn.execute(delete(queue).where(queue.c.queue_key.startswith(prefix, autoescape=True)))
    return int(result.rowcount or 0)


class LeaseRequest(BaseModel):
    """A request waiting in the lease queue (see `waiting_requests`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    position: int
    queue_key: str
    holder: str
    demand: dict[str, int]
    first_requested_at: datetime
    last_polled_at: datetime
    expires_at: datetime
    polls: int


#: Expiry last confirmed by the database, per lease token, in this process (see `heartbeat`).
_confirmed_until: dict[str, datetime] = {}


def heartbeat(engine: Engine, lease: NodeLease, *, ttl_s: float | None = None,
              now: datetime | None = None) -> NodeLease:
    """Extend the lease (by its original TTL unless `ttl_s` is given); raises LeaseLost if it is gone.

    If the database cannot be reached (a Postgres restart), the lease is still ours until the expiry the
    database last confirmed to this process: nobody can expire it earlier, so the holder keeps working and
    the lease is returned unchanged. Past that expiry the connection error is raised.
    """
    t = now or utcnow()
    ttl = timedelta(seconds=ttl_s) if ttl_s is not None else lease.expires_at - lease.heartbeat_at
    table = NodeLeaseRow.tbl()
    try:
        with write_transaction(engine) as conn:
            row = conn.execute(
                update(table)
                .where(table.c.id == lease.id, table.c.token == lease.token, table.c.released_at.is_(None))
                .values(heartbeat_at=t, expires_at=t + ttl)
                .returning(*table.c)
            ).first()
    except UNAVAILABLE as exc:
        until = max(_confirmed_until.get(lease.token, lease.expires_at), lease.expires_at)
        if t < until:
            log.warning("lease %s on %s: results DB unreachable (%s); lease valid until %s, continuing",
                        lease.id, lease.node, type(exc).__name__, until.isoformat())
            return lease
        raise
    if row is None:
        _confirmed_until.pop(lease.token, None)
        raise LeaseLost(f"lease {lease.id} on node {lease.node} was released or expired")
    renewed = _lease(row)
    _confirmed_until[lease.token] = renewed.expires_at
    return renewed


def release(engine: Engine, lease: NodeLease, *, now: datetime | None = None) -> bool:
    """Release the lease; True if this call released it, False if it was already released/expired."""
    table = NodeLeaseRow.tbl()
    with write_transaction(engine) as conn:
        result = conn.execute(
            update(table)
            .where(table.c.id == lease.id, table.c.token == lease.token, table.c.released_at.is_(None))
            .values(released_at=now or utcnow(), release_reason="released")
        )
    return bool(result.rowcount)


def release_all(engine: Engine, leases: Sequence[NodeLease], *, now: datetime | None = None) -> int:
    """Release every lease of a set in one transaction; returns how many this call released (0 if all were
    already released or expired)."""
    table = NodeLeaseRow.tbl()
    if not leases:
        return 0
    with write_transaction(engine, exclusive=True) as conn:  # read-then-write: SQLite's write lock up front
        ids = _lock_active(conn, *_members(table, leases))
        released = _set_released(conn, ids, now or utcnow(), "released")
    return len(released)


def _members(table: Any, leases: Sequence[NodeLease]) -> list[Any]:
    """Row conditions matching exactly these leases (id and token: a stale copy never touches a new lease)."""
    by_id = {x.id: x.token for x in leases}
    return [table.c.id.in_(list(by_id)), table.c.token.in_(list(by_id.values()))]


def heartbeat_all(engine: Engine, leases: Sequence[NodeLease], *, ttl_s: float | None = None,
                  now: datetime | None = None) -> list[NodeLease]:
    """Extend every lease of a set in one transaction (by its original TTL unless `ttl_s` is given).

    Raises LeaseLost if any member was released or expired; the other members are then released (reason
    `partial`) in the same transaction, so no holder keeps a partial set. If the database cannot be reached,
    the set is still ours until the earliest expiry the database last confirmed for its members (see
    `heartbeat`): the leases are returned unchanged until then.
    """
    if not leases:
        raise ValueError("heartbeat_all needs at least one lease")
    t = now or utcnow()
    first = leases[0]
    ttl = timedelta(seconds=ttl_s) if ttl_s is not None else first.expires_at - first.heartbeat_at
    table = NodeLeaseRow.tbl()
    lost: list[str] = []
    rows: Sequence[Any] = []
    try:
        with write_transaction(engine, exclusive=True) as conn:
            ids = _lock_active(conn, *_members(table, leases))
            if len(ids) < len(leases):
                held = set(ids)
                lost = [x.node for x in leases if x.id not in held]
                _set_released(conn, ids, t, "partial")
            else:
                rows = conn.execute(
                    update(table).where(table.c.id.in_(ids)).values(heartbeat_at=t, expires_at=t + ttl)
                    .returning(*table.c)
                ).all()
    except UNAVAILABLE as exc:
        until = min(max(_confirmed_until.get(x.token, x.expires_at), x.expires_at) for x in leases)
        if t < until:
            log.warning("lease set %s (%s): results DB unreachable (%s); valid until %s, continuing",
                        first.set_id, ", ".join(x.node for x in leases), type(exc).__name__, until.isoformat())
            return list(leases)
        raise
    if lost:
        for x in leases:
            _confirmed_until.pop(x.token, None)
        raise LeaseLost(f"lease set {first.set_id} lost node(s) {', '.join(lost)} (released or expired); "
                        "the rest of the set was released")
    renewed = sorted((_lease(r) for r in rows), key=lambda x: x.node)
    for x in renewed:
        _confirmed_until[x.token] = x.expires_at
    return renewed


def expire_stale(engine: Engine, now: datetime | None = None) -> list[NodeLease]:
    """Expire every active lease past its `expires_at`, with the rest of its set, and return them all (the
    reaper removes their servers and gets every node of a multi-node group)."""
    t = now or utcnow()
    table = NodeLeaseRow.tbl()
    with write_transaction(engine, exclusive=True) as conn:
        stale = conn.execute(
            select(table.c.id, table.c.set_id).where(table.c.released_at.is_(None), table.c.expires_at < t)
        ).all()
        if not stale:
            return []
        set_ids = sorted({r.set_id for r in stale if r.set_id is not None})
        ids = {r.id for r in stale}
        if set_ids:
            ids |= set(conn.execute(select(table.c.id).where(table.c.released_at.is_(None),
                                                             table.c.set_id.in_(set_ids))).scalars())
        return _set_released(conn, sorted(ids), t, "expired")


def lease_active(engine: Engine, token: str) -> bool | None:
    """Whether the lease with `token` is still held: True, False (released or expired), or None when this
    database has no such lease (the reaper then leaves its server alone: it cannot tell)."""
    table = NodeLeaseRow.tbl()
    with engine.connect() as conn:
        row = conn.execute(select(table.c.released_at).where(table.c.token == token)).first()
    return None if row is None else row.released_at is None


def active_leases(engine: Engine, runner: str | None = None) -> list[NodeLease]:
    """Leases currently held (not released, not yet expired by the reaper)."""
    table = NodeLeaseRow.tbl()
    stmt = select(table).where(table.c.released_at.is_(None)).order_by(table.c.node)
    if runner:
        stmt = stmt.where(table.c.runner == runner)
    with engine.connect() as conn:
        return [_lease(r) for r in conn.execute(stmt)]


def lease_history(engine: Engine, node: str | None = None) -> list[NodeLease]:
    """Every lease ever taken (oldest first), for audits and the no-double-booking proof."""
    table = NodeLeaseRow.tbl()
    stmt = select(table).order_by(table.c.acquired_at, table.c.id)
    if node:
        stmt = stmt.where(table.c.node == node)
    with engine.connect() as conn:
        return [_lease(r) for r in conn.execute(stmt)]
