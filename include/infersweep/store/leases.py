"""Node leases: the real mutex for GPU nodes (an Airflow pool slot is held per task, not per chain).

`acquire_lease` picks a free node of the runner label: `SELECT … FOR UPDATE SKIP LOCKED` on Postgres
(concurrent acquirers skip each other's candidate rows instead of queueing), `BEGIN IMMEDIATE` on SQLite
(one writer at a time). A partial unique index (one row with `released_at IS NULL` per node) makes a
double booking impossible even if that logic were wrong. Lease rows are never deleted, so the history
proves who held which node when.

A lease whose holder stopped heartbeating is *not* taken over by `acquire_lease`: its orphan server may
still hold the GPUs. The reaper calls `expire_stale`, removes the containers of the leases it returns,
and the nodes become free.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Engine, and_, exists, select, update
from sqlalchemy import exc as sa_exc

from infersweep.config.inventory import Node
from infersweep.faults.errors import InfersweepError
from infersweep.store.db import is_postgres, write_transaction
from infersweep.store.models import NodeLeaseRow, NodeRow, utcnow
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

    Skipping unchanged rows matters on Postgres: an upsert row-locks the node, and a concurrent
    `FOR UPDATE SKIP LOCKED` would then skip a node that is actually free.
    """
    wanted = {n.name: _node_values(n) for n in nodes}
    cols = ("name", "runner", "gpus", "docker_url", "spec")
    with engine.connect() as conn:
        have = {r.name: dict(r._mapping) for r in conn.execute(
            select(*(NodeRow.tbl().c[c] for c in cols)).where(NodeRow.name.in_(list(wanted)))
        )}
    changed = [v for name, v in wanted.items() if have.get(name) != {c: v[c] for c in cols}]
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
) -> NodeLease | None:
    """Lease one free node of `runner` among `nodes` for `ttl_s` seconds; None when all are busy.

    Idempotent for a holder: if `holder` already has an active lease, that lease is returned (a retried
    serve task does not book a second node).
    """
    if ttl_s <= 0:
        raise ValueError("ttl_s must be > 0")
    candidates = [n for n in nodes if n.runner == runner]
    if not candidates:
        raise ValueError(f"no node in the inventory has runner label {runner!r}")
    register_nodes(engine, candidates)
    holder_text = str(holder)
    for _ in range(attempts):
        try:
            return _try_acquire(engine, runner, holder, holder_text, ttl_s, [n.name for n in candidates], now)
        except sa_exc.IntegrityError:
            # Two acquirers raced for the same node and the unique index stopped the second: try again.
            continue
    return None


def _try_acquire(engine: Engine, runner: str, holder: LeaseHolder | str, holder_text: str, ttl_s: float,
                 names: list[str], now: datetime | None) -> NodeLease | None:
    lease = NodeLeaseRow.tbl()
    with write_transaction(engine, exclusive=True) as conn:
        mine = conn.execute(
            select(lease).where(lease.c.holder == holder_text, lease.c.node.in_(names),
                                lease.c.released_at.is_(None))
        ).first()
        if mine is not None:
            return _lease(mine)
        busy = exists().where(and_(lease.c.node == NodeRow.name, lease.c.released_at.is_(None)))
        stmt = (
            select(NodeRow.name)
            .where(NodeRow.runner == runner, NodeRow.name.in_(names), NodeRow.enabled.is_(True), ~busy)
            .order_by(NodeRow.name)
            .limit(1)
        )
        if is_postgres(conn):
            stmt = stmt.with_for_update(skip_locked=True, of=NodeRow.tbl())
        node = conn.execute(stmt).scalar_one_or_none()
        if node is None:
            return None
        # Timestamp taken once the node is ours (lock held), so history intervals order correctly.
        t = now or utcnow()
        structured = holder if isinstance(holder, LeaseHolder) else None
        row = conn.execute(
            lease.insert().values(
                node=node, runner=runner, holder=holder_text, token=str(uuid.uuid4()),
                holder_dag_id=structured.dag_id if structured else None,
                holder_run_id=structured.run_id if structured else None,
                holder_group=structured.group_id if structured else None,
                holder_try=structured.try_number if structured else None,
                acquired_at=t, heartbeat_at=t, expires_at=t + timedelta(seconds=ttl_s),
            ).returning(*lease.c)
        ).one()
        return _lease(row)


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


def expire_stale(engine: Engine, now: datetime | None = None) -> list[NodeLease]:
    """Expire every active lease past its `expires_at` and return them (the reaper removes their servers)."""
    t = now or utcnow()
    table = NodeLeaseRow.tbl()
    with write_transaction(engine, exclusive=True) as conn:
        rows = conn.execute(
            update(table)
            .where(table.c.released_at.is_(None), table.c.expires_at < t)
            .values(released_at=t, release_reason="expired")
            .returning(*table.c)
        ).all()
    return [_lease(r) for r in rows]


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
