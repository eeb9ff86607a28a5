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
from infersweep.recipes.topology import node_demand, nodes_for_pools
from infersweep.store.api import ResultStore
from infersweep.store.leases import (
    LeaseHolder,
    LeaseLost,
    NodeLease,
    acquire_lease,
    acquire_leases,
    active_leases,
    expire_stale,
    heartbeat_all,
    lease_active,
    register_nodes,
    release,
)

log = logging.getLogger(__name__)
#: Seconds a rescheduled serve may take beyond its poke delay to come back (scheduler loop, worker start).
WAITER_SLACK_S = 120.0


def acquire_or_reschedule(deps: ChainDeps, group: ServeGroup, nodes: Sequence[Node],
                          rc: RunContext) -> list[NodeLease]:
    """The group's node leases for this try (one node, or every node of a multinode topology, taken all or
    none; the head node's lease first), or `AirflowRescheduleException` when they are not free: the worker
    slot goes back and the task asks again later (sensor reschedule semantics), after a delay that grows
    with the queue (`AirflowSettings.lease_poke_delay`). Requests wait in a fair queue (`store.leases`), so
    a multinode group is not starved by a stream of single-node ones."""
    store, settings = deps.store, deps.settings
    register_nodes(store.engine, list(nodes))
    for stale in expire_stale(store.engine):
        log.warning("lease %s of %s expired (holder died?); its server will be reaped", stale.id, stale.holder)
    holder = LeaseHolder(dag_id=rc.dag_id, run_id=rc.run_id, group_id=group.id, try_number=rc.try_number)
    # The delay is drawn first: a refused request keeps its place in the queue only while it polls again
    # within its waiter TTL, so that TTL must outlast this wait (plus the scheduler's latency).
    waiting = _waiting(store, group.runner)
    delay = settings.lease_poke_delay(rc.reschedules, waiting=waiting, nodes=len(nodes))
    wait_ttl = 2.0 * delay + WAITER_SLACK_S
    if group.multinode:
        leases = acquire_leases(store.engine, demand=node_demand(group.pools), holder=holder,
                                ttl_s=settings.lease_ttl_s, nodes=list(nodes), wait_ttl_s=wait_ttl)
        if leases:
            return _head_first(group, leases)
    else:
        lease = acquire_lease(store.engine, runner=group.runner, holder=holder, ttl_s=settings.lease_ttl_s,
                              nodes=list(nodes), wait_ttl_s=wait_ttl)
        if lease is not None:
            return [lease]
    from airflow.sdk.exceptions import AirflowRescheduleException

    want = f"{group.nodes} nodes ({', '.join(f'{n} {r}' for r, n in node_demand(group.pools).items())})" \
        if group.multinode else f"a {group.runner} node"
    log.info("no free %s for %s (%d groups waiting for %d nodes); rescheduling in %.0fs",
             want, group.id, waiting, len(nodes), delay)
    raise AirflowRescheduleException(datetime.now(UTC) + timedelta(seconds=delay))


def topology_order(group: ServeGroup, leases: Sequence[NodeLease]) -> list[str]:
    """The leased node names in the group's topology node-index order (pool after pool, per runner label)."""
    leased: dict[str, list[str]] = {}
    for le in sorted(leases, key=lambda x: x.node):
        leased.setdefault(le.runner, []).append(le.node)
    return nodes_for_pools(group.pools, leased)


def _head_first(group: ServeGroup, leases: Sequence[NodeLease]) -> list[NodeLease]:
    """The set with its head node's lease first: the node the topology's first pool starts on."""
    head = topology_order(group, leases)[0]
    return sorted(leases, key=lambda x: (x.node != head, x.node))


def _waiting(store: ResultStore, runner: str) -> int:
    """This run's groups still waiting for a `runner` node; 0 when the DB cannot say (plain backoff then)."""
    try:
        return store.waiting_groups(runner)
    except Exception as exc:
        log.warning("could not count waiting groups: %s", type(exc).__name__)
        return 0


@contextlib.contextmanager
def leased_node(deps: ChainDeps, group: ServeGroup, leases: Sequence[NodeLease], *,
                concs: Sequence[int]) -> Iterator[NodeLease]:
    """Hold `leases` (head node's first) while the body starts the group's server. On any exception every
    lease is released and the group (and each of its pending points) is failed with the error's class;
    then the error propagates. On success the leases stay held for the chain (teardown releases them)."""
    lease = leases[0]
    try:
        yield lease
    except BaseException as exc:
        for held in leases:
            release_quietly(deps, held, group.id)
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


def keep_or_relet(deps: ChainDeps, group: ServeGroup, nodes: Sequence[Node], leases: Sequence[NodeLease],
                  rc: RunContext) -> list[NodeLease] | None:
    """Renew `leases` (all of them); None while they hold. If one was lost (a retried task whose worker died
    outlived its TTL: the node may serve another group now) the rest are released (by `heartbeat_all`) and a
    new set is taken, or the task is rescheduled.

    A database that cannot be reached counts as "still held" until the expiry it last confirmed.
    """
    from infersweep.store.spool import UNAVAILABLE

    try:
        expire_stale(deps.store.engine)  # our own lease too, if this task outlived its TTL
    except UNAVAILABLE as exc:
        log.warning("could not expire stale leases (results DB unreachable: %s)", type(exc).__name__)
    try:
        heartbeat_all(deps.store.engine, leases, ttl_s=deps.settings.lease_ttl_s)
        return None
    except LeaseLost:
        pass  # heartbeat_all released the rest of the set: a topology runs on all of its nodes or not at all
    new = acquire_or_reschedule(deps, group, nodes, rc)
    log.warning("%s: lease %s on %s expired (its task died?); re-leased %s as lease %s", group.id, leases[0].id,
                leases[0].node, ", ".join(le.node for le in new), ", ".join(str(le.id) for le in new))
    return new


def reap_orphans(deps: ChainDeps, node: Node, engine_name: str) -> None:
    """Stop servers whose task died with them, once a node is leased.

    Docker: infersweep containers on `node` whose run holds no live lease. Local servers (sim, process):
    every server this host recorded whose lease has ended (expired or released), whichever node it served:
    they all share this host's CPUs/GPUs.
    """
    from infersweep.engines.reaper import ServerRegistry, reap_local, reap_node

    store = deps.store
    if engine_name == "slurm":
        # Slurm owns a job's processes: an orphan job ends at its time limit (`--time`); its nodes are not
        # Docker hosts to sweep.
        return
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
