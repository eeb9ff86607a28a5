"""Node leases of a serve group: acquire (or reschedule), keep, re-lease after expiry, release.

`leased_node()` is the one place that decides what happens to a lease when a start fails: whatever goes
wrong inside it (building the engine, reaping, starting, the readiness wait), the lease is released and
the group is failed with the error's class, before the error propagates.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infersweep.airflow.context import RunContext
from infersweep.airflow.deps import ChainDeps
from infersweep.config.inventory import Node
from infersweep.engines.factory import LOCAL_ENGINES
from infersweep.plan.models import ServeGroup
from infersweep.store.api import ResultStore
from infersweep.store.leases import (
    LeaseHolder,
    LeaseLost,
    NodeLease,
    acquire_lease,
    active_leases,
    expire_stale,
    heartbeat,
    lease_active,
    register_nodes,
    release,
)

log = logging.getLogger(__name__)


def acquire_or_reschedule(deps: ChainDeps, group: ServeGroup, nodes: Sequence[Node], rc: RunContext) -> NodeLease:
    """A node lease for this try, or `AirflowRescheduleException` when none is free: the worker slot goes
    back and the task asks again later (sensor reschedule semantics), after a delay that grows with the
    queue (`AirflowSettings.lease_poke_delay`)."""
    store, settings = deps.store, deps.settings
    register_nodes(store.engine, list(nodes))
    for stale in expire_stale(store.engine):
        log.warning("lease %s of %s expired (holder died?); its server will be reaped", stale.id, stale.holder)
    holder = LeaseHolder(dag_id=rc.dag_id, run_id=rc.run_id, group_id=group.id, try_number=rc.try_number)
    lease = acquire_lease(store.engine, runner=group.runner, holder=holder, ttl_s=settings.lease_ttl_s,
                          nodes=list(nodes))
    if lease is not None:
        return lease
    from airflow.sdk.exceptions import AirflowRescheduleException

    waiting = _waiting(store, group.runner)
    delay = settings.lease_poke_delay(rc.reschedules, waiting=waiting, nodes=len(nodes))
    log.info("no free %s node for %s (%d groups waiting for %d nodes); rescheduling in %.0fs",
             group.runner, group.id, waiting, len(nodes), delay)
    raise AirflowRescheduleException(datetime.now(UTC) + timedelta(seconds=delay))


def _waiting(store: ResultStore, runner: str) -> int:
    """This run's groups still waiting for a `runner` node; 0 when the DB cannot say (plain backoff then)."""
    try:
        return store.waiting_groups(runner)
    except Exception as exc:
        log.warning("could not count waiting groups: %s", type(exc).__name__)
        return 0


@contextlib.contextmanager
def leased_node(deps: ChainDeps, group: ServeGroup, lease: NodeLease, *, concs: Sequence[int]) -> Iterator[NodeLease]:
    """Hold `lease` while the body starts the group's server. On any exception the lease is released and
    the group (and each of its pending points) is failed with the error's class; then the error propagates.
    On success the lease stays held for the chain (teardown releases it)."""
    try:
        yield lease
    except BaseException as exc:
        release_quietly(deps, lease, group.id)
        deps.store.record_group({"id": group.id}, status="failed", node=lease.node)
        # The class goes on the group and on each pending point, so summaries and reports show why.
        deps.store.fail_group(group.id, exc, concs=list(concs), isl=group.isl, osl=group.osl)
        raise


def release_quietly(deps: ChainDeps, lease: NodeLease, group_id: str) -> bool:
    """Release `lease`; a DB that cannot be reached leaves it to expire after its TTL (logged, not raised)."""
    try:
        return release(deps.store.engine, lease)
    except Exception as exc:
        log.warning("%s: could not release lease %s (it expires after its TTL): %s", group_id, lease.id, exc)
        return False


def keep_or_relet(deps: ChainDeps, group: ServeGroup, nodes: Sequence[Node], lease: NodeLease,
                  rc: RunContext) -> NodeLease | None:
    """Renew `lease`; None while it holds. If it was lost (a retried task whose worker died outlived its
    TTL: the node may serve another group now) a new lease is taken, or the task is rescheduled.

    A database that cannot be reached counts as "still held" until the expiry it last confirmed.
    """
    from infersweep.store.spool import UNAVAILABLE

    try:
        expire_stale(deps.store.engine)  # our own lease too, if this task outlived its TTL
    except UNAVAILABLE as exc:
        log.warning("could not expire stale leases (results DB unreachable: %s)", type(exc).__name__)
    try:
        heartbeat(deps.store.engine, lease, ttl_s=deps.settings.lease_ttl_s)
        return None
    except LeaseLost:
        pass
    new = acquire_or_reschedule(deps, group, nodes, rc)
    log.warning("%s: lease %s on %s expired (its task died?); re-leased %s as lease %s", group.id, lease.id,
                lease.node, new.node, new.id)
    return new


def reap_orphans(deps: ChainDeps, node: Node, engine_name: str) -> None:
    """Stop servers whose task died with them, once a node is leased.

    Docker: infersweep containers on `node` whose run holds no live lease. Local servers (sim, process):
    every server this host recorded whose lease has ended (expired or released), whichever node it served:
    they all share this host's CPUs/GPUs.
    """
    from infersweep.engines.reaper import ServerRegistry, reap_local, reap_node

    store = deps.store
    if engine_name in LOCAL_ENGINES:
        try:
            for srv in reap_local(ServerRegistry(local_registry_dir(deps)), lambda t: lease_active(store.engine, t)):
                log.warning("reaped orphan server %s of %s on %s (pids %s)%s", srv.server_id, srv.holder,
                            srv.node, list(srv.pids), "" if srv.removed else f": {srv.error}")
        except Exception as exc:  # never block a start on the reaper; the lease keeps the node exclusive
            log.warning("local reaper failed: %s", exc)
        return

    def run_active(run_id: str) -> bool:
        return any(lease.holder.split("/")[1] == run_id for lease in active_leases(store.engine))

    try:
        for gone in reap_node(node, run_active):
            log.warning("reaped orphan container %s (run %s) on %s", gone.name, gone.run_id, node.name)
    except Exception as exc:  # the start that follows reports an unreachable engine with its own class
        log.warning("reaper on %s failed: %s", node.name, exc)


def local_registry_dir(deps: ChainDeps) -> Path:
    """This host's record of the local servers it started (the reaper's evidence)."""
    return deps.settings.work_dir / "local-servers"
