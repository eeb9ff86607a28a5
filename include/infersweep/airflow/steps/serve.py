"""serve (the chain's setup) and teardown: a node lease and the group's server on it, then both released."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from infersweep.airflow import policies, server
from infersweep.airflow.context import RunContext, recorded_attempt
from infersweep.airflow.deps import ChainDeps
from infersweep.airflow.lease import acquire_or_reschedule, leased_node
from infersweep.airflow.payloads import ServedGroup, ServerState, StepOutcome, WorkItem
from infersweep.faults.errors import ClassifiedError
from infersweep.store.leases import release_all

log = logging.getLogger(__name__)


def serve(work: WorkItem, rc: RunContext, deps: ChainDeps | None = None) -> ServedGroup:
    """Lease a node (reschedule while none is free), start the server on it, wait until it answers."""
    deps = deps or ChainDeps.for_run(rc)
    group = work.group
    with recorded_attempt(deps.store, rc, group_id=group.id) as attempt:
        if not work.nodes:
            raise ClassifiedError(
                "config_error", f"no nodes in the inventory for runner label {group.runner!r}; add "
                f"`inventory: {{{group.runner}: [{{name: ..., docker-url: ...}}]}}` to the sweep file")
        # An adaptive run skips a group a prior shows dominated before it takes a node (GroupSkipped).
        policies.skip_if_dominated(deps.store, work, rc)
        leases = acquire_or_reschedule(deps, group, work.nodes, rc)
        with leased_node(deps, group, leases, concs=work.concs) as lease:
            node = lease.node_spec(work.nodes)
            attempt["node"] = ",".join(le.node for le in leases)
            for held in leases:
                deps.reap(deps, held.node_spec(work.nodes), work.engine)
            engine = deps.engine(work, rc)
            members = tuple(leases) if group.multinode else ()
            handle = server.start_server(deps, engine, work, node, lease, rc, members)
            served = ServedGroup(**dict(work), state=ServerState(handle=handle, node=node, lease=lease,
                                                                 leases=members))
            server.record_state(deps, served)
        return served


def teardown(served: ServedGroup, rc: RunContext, deps: ChainDeps | None = None) -> StepOutcome:
    """Stop the server (logs first), store its log, release the lease, flush the spool. Always runs.

    If a retry replaced the server or re-leased a node, the current one is stopped and released too (the
    original again: both are idempotent).
    """
    deps = deps or ChainDeps.for_run(rc)
    group = served.group
    current = server.current(deps, served)
    with recorded_attempt(deps.store, rc, group_id=group.id, node=current.state.node.name):
        engine = deps.engine(served, rc)
        text = engine.stop(current.state.handle)
        if current.state.handle.id != served.state.handle.id:
            engine.stop(served.state.handle)
        deps.store.record_server_log(group_id=group.id, text=text, try_number=rc.try_number,
                                     node=current.state.node.name)
        # Raises while the results DB is unreachable: the teardown is retried, rather than leaving the node
        # booked until the lease's TTL.
        released = release_all(deps.store.engine, current.state.all_leases) > 0
        if current.state.lease.id != served.state.lease.id:
            released = release_all(deps.store.engine, served.state.all_leases) > 0 or released
        deps.store.record_server(group.id, None)
        deps.store.record_group({"id": group.id}, status="done", finished_at=datetime.now(UTC))
        flushed = deps.store.flush()
        return StepOutcome(group_id=group.id, detail=f"released={released} log_bytes={len(text)} "
                                                      f"spool_complete={flushed.complete}")
