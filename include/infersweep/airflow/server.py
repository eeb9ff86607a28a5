"""A serve group's server on its leased node: start (and stop a half-started one), liveness, death,
restart, and the current server recorded on the group's row for the tasks after `serve`."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence

from infersweep.airflow.context import RunContext, free_port
from infersweep.airflow.deps import ChainDeps
from infersweep.airflow.lease import local_registry_dir, topology_order
from infersweep.airflow.payloads import ServedGroup, ServerState, WorkItem
from infersweep.config.inventory import Node
from infersweep.engines.base import Engine, EngineError, ServerHandle
from infersweep.engines.factory import LOCAL_ENGINES
from infersweep.engines.slurm_topology import SlurmTopologyEngine
from infersweep.engines.topology import TopologyEngine, component_handles, is_topology
from infersweep.faults.errors import ClassifiedError
from infersweep.store.leases import NodeLease, heartbeat_all

log = logging.getLogger(__name__)


def start_server(deps: ChainDeps, engine: Engine, work: WorkItem, node: Node, lease: NodeLease,
                 rc: RunContext, leases: Sequence[NodeLease] = ()) -> ServerHandle:
    """Start the group's recipe on `node` and wait until it answers. A half-started server is stopped (and
    its log kept) before the error propagates: the teardown only runs after a successful setup.

    A multinode group (`engine` is a `TopologyEngine`) starts every process of its topology on the nodes
    of its lease set `leases` (`node`/`lease` are the head node's)."""
    group, store = work.group, deps.store
    recipe = work.recipe
    if work.engine in LOCAL_ENGINES:
        # Several simulated "nodes" share this host: each server listens on its own free port.
        recipe = recipe.with_port(free_port())
    recipe = recipe.model_copy(update={"serve_group": group.id})
    server_id = uuid.uuid4().hex
    from infersweep.engines.reaper import SERVER_MARKER_ENV

    if isinstance(engine, TopologyEngine | SlurmTopologyEngine):
        engine.nodes = topology_nodes(work, leases or (lease,))
    if isinstance(engine, TopologyEngine) and work.engine in LOCAL_ENGINES:
        engine.marker = (SERVER_MARKER_ENV, server_id)
    elif work.engine in LOCAL_ENGINES:
        # The marker lets the reaper recognise this server's processes (and only them) if its task dies.
        recipe = recipe.model_copy(update={"env": {**recipe.env, SERVER_MARKER_ENV: server_id}})
    started = time.monotonic()
    handle: ServerHandle | None = None
    try:
        handle = engine.start(recipe, node)
        if work.engine in LOCAL_ENGINES:
            by_node = {le.node: le for le in (leases or (lease,))}
            for part in component_handles(handle):
                part_id = (TopologyEngine.marker_id(server_id, str(part.extra["component"]))
                           if is_topology(handle) else server_id)
                _register(deps, part, part_id, by_node.get(part.node or "", lease))
        engine.wait_ready(handle)
    except BaseException as exc:
        # Stopping may fail too (dockerd restarting): the reaper and the lease TTL clean up then, and the
        # start's own error is what gets classified.
        if handle is not None:
            try:
                text = engine.stop(handle)
            except Exception as stop_exc:
                log.warning("%s: could not stop the half-started server: %s", group.id, stop_exc)
            else:
                if text:
                    store.record_server_log(group_id=group.id, text=text, try_number=rc.try_number, node=node.name)
        if isinstance(exc, EngineError | KeyboardInterrupt | SystemExit):
            raise
        raise EngineError(f"{group.id}: server failed to start on {node.name}: {exc}") from exc
    store.record_group({"id": group.id}, status="serving", node=node.name,
                       model_load_s=round(time.monotonic() - started, 3), engine=work.engine,
                       engine_version=handle.engine_version, image_digest=handle.image_digest)
    log.info("%s ready on %s at %s (%s)", group.id, node.name, handle.base_url, handle.engine_version)
    return handle


def topology_nodes(work: WorkItem, leases: Sequence[NodeLease]) -> list[Node]:
    """The group's leased nodes in its topology's node-index order (pool after pool, per runner label)."""
    by_name = {n.name: n for n in work.nodes}
    return [by_name[name] for name in topology_order(work.group, leases)]


def engine_for_work(inner: Engine, work: WorkItem) -> Engine:
    """`inner`, or for a multinode work item the `TopologyEngine` that starts its processes through `inner`
    (the simulator translates each component's real argv into its own; local backends pick free ports)."""
    if work.topology is None:
        return inner
    if work.engine == "slurm":
        # One Slurm job for the whole group (InferenceX's multi-node path), not one job per component.
        from infersweep.engines.slurm import SlurmEngine
        from infersweep.engines.slurm_topology import SlurmTopologyEngine

        assert isinstance(inner, SlurmEngine)
        return SlurmTopologyEngine(inner, work.topology)
    translate = None
    if work.engine == "sim":
        from infersweep.engines.sim_engine import component_recipe

        translate = component_recipe
    port_for = (lambda _node: free_port()) if work.engine in LOCAL_ENGINES else None
    return TopologyEngine(inner, work.topology, translate=translate, port_for=port_for)


def _register(deps: ChainDeps, handle: ServerHandle, server_id: str, lease: NodeLease) -> None:
    from infersweep.engines.reaper import LocalServer, ServerRegistry

    ServerRegistry(local_registry_dir(deps)).add(LocalServer.from_pid(
        server_id=server_id, lease_token=lease.token, lease_id=lease.id, node=lease.node, holder=lease.holder,
        pid=int(handle.extra["pid"]), pgid=int(handle.extra.get("pgid") or handle.extra["pid"]),
        create_time=handle.extra.get("create_time"), log_path=handle.log_path))


def record_state(deps: ChainDeps, served: ServedGroup) -> None:
    """Put the group's current server, node and lease on its row (for retries on any worker)."""
    deps.store.record_server(served.group.id, served.state.model_dump(mode="json"))


def current(deps: ChainDeps, served: ServedGroup) -> ServedGroup:
    """`served` with the server, node and lease its row names now (a retry may have restarted the server or
    re-leased a node); `served` itself when the row has none or the DB cannot be read."""
    try:
        data = deps.store.current_server(served.group.id)
    except Exception as exc:  # a DB outage must not stop a benchmark that still has its server
        log.warning("%s: could not read the current server (%s); using the one serve started",
                    served.group.id, type(exc).__name__)
        return served
    return served.with_state(ServerState.model_validate(data)) if data else served


def alive(deps: ChainDeps, engine: Engine, handle: ServerHandle) -> bool:
    """The server's process or container is running and it answers `/health`."""
    return engine.is_alive(handle) and deps.healthy(handle)


def death(deps: ChainDeps, served: ServedGroup, engine: Engine, conc: int) -> ClassifiedError | None:
    """None while the server lives; else the error that classifies its death (root cause from its log).

    A log naming a known root cause (CUDA OOM, illegal memory access, NCCL …) keeps that class and its retry
    semantics; a server that just vanished is `server_died`, transient (retried once, on a fresh server).
    """
    from infersweep.faults.classify import classify

    handle = served.state.handle
    if alive(deps, engine, handle):
        return None
    tail = engine.logs(handle, tail=40)
    kind = classify(tail).kind
    kind = "server_died" if kind in ("unknown", "server_not_ready") else kind
    return ClassifiedError(kind, f"{served.group.id}: the server on {served.state.node.name} died during "
                                 f"conc {conc}; last log lines:\n{tail}", transient=kind == "server_died" or None)


def restart(deps: ChainDeps, engine: Engine, served: ServedGroup, rc: RunContext) -> ServedGroup:
    """A retry found its server dead: keep the dead one's log, start a fresh server on the same leased node
    and record it on the group's row for evaluate and teardown."""
    group, lease, store = served.group, served.state.lease, deps.store
    text = engine.stop(served.state.handle)
    if text:
        store.record_server_log(group_id=group.id, text=text, try_number=rc.try_number, source="server-died",
                                node=lease.node)
    heartbeat_all(store.engine, served.state.all_leases, ttl_s=deps.settings.lease_ttl_s)
    log.warning("%s: server on %s is gone; restarting it for try %d", group.id, lease.node, rc.try_number)
    handle = start_server(deps, engine, served, served.state.node, lease, rc, served.state.leases)
    fresh = served.with_state(served.state.model_copy(update={"handle": handle}))
    record_state(deps, fresh)
    return fresh
