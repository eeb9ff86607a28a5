"""Multi-process servers: a `TopologyRecipe`'s components started through one backend, stopped together.

`TopologyEngine` wraps a per-process backend (simulated, local process, Docker): every component (a
worker rank, the router) is one `inner.start()` on its node, workers first, the router last with the
workers' addresses filled in. The group sees one `ServerHandle` (the entry's URL), whose `extra` lists
every component's handle, so a later task in another process can check or stop all of them.

Teardown always stops every component, in reverse start order, even when one of them died mid-run or
its stop fails: the errors are collected and raised after the last one was tried.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from infersweep.config.inventory import Node
from infersweep.engines.base import Engine, EngineError, ServerHandle
from infersweep.recipes.model import Recipe
from infersweep.recipes.topology import Component, TopologyRecipe

log = logging.getLogger(__name__)

#: How a component becomes the recipe the inner backend starts (the simulator translates real argv into
#: its own; real backends start the recipe as it is). Gets the component and its placeholder-filled recipe;
#: None means the backend needs no such process (the simulator runs no etcd or NATS).
Translate = Callable[[Component, TopologyRecipe, Recipe], Recipe | None]
#: A port for a component on a node shared by several processes (local backends); None keeps the recipe's.
PortPicker = Callable[[Node], int] | None
_COMPONENTS = "components"


def _identity(_component: Component, _topology: TopologyRecipe, recipe: Recipe) -> Recipe:
    return recipe


def component_handles(handle: ServerHandle) -> list[ServerHandle]:
    """The component handles a topology handle carries (start order); [handle] for a single server."""
    raw = handle.extra.get(_COMPONENTS)
    if not raw:
        return [handle]
    return [ServerHandle(**c) for c in raw]


def is_topology(handle: ServerHandle) -> bool:
    """Whether `handle` is a multi-process topology's (its `extra` lists components)."""
    return bool(handle.extra.get(_COMPONENTS))


class TopologyEngine(Engine):
    """Start, probe and stop every process of a topology through `inner`.

    `nodes` are the group's leased nodes in `nodes_for_pools` order (component `node_index` indexes them).
    """

    name = "topology"

    def __init__(self, inner: Engine, topology: TopologyRecipe | None = None, nodes: Sequence[Node] = (), *,
                 translate: Translate | None = None, port_for: PortPicker = None) -> None:
        self.inner = inner
        self.topology = topology
        self.nodes = list(nodes)
        self.translate = translate or _identity
        self.port_for = port_for
        #: (env var, server id): each component gets `<server id>-<component>` in that variable, so the local
        #: reaper can recognise its processes (and only them) if the task that started them dies.
        self.marker: tuple[str, str] | None = None

    @staticmethod
    def marker_id(server_id: str, component: str) -> str:
        """The reaper's id of one component of server `server_id`."""
        return f"{server_id}-{component}"

    # --------------------------------------------------------------------------------------------- start
    def start(self, recipe: Recipe | None = None, node: Node | None = None) -> ServerHandle:
        """Start every component (workers first), then return the entry's handle carrying all of them.

        `recipe`/`node` are ignored: the topology and its nodes were given at construction. If any start
        fails, the components already started are stopped before the error propagates.
        """
        topo = self.topology
        if topo is None:
            raise EngineError("TopologyEngine.start needs the topology it was built with")
        if len(self.nodes) < topo.nodes:
            raise EngineError(f"topology needs {topo.nodes} node(s), {len(self.nodes)} leased")
        addresses: dict[str, tuple[str, int]] = {}
        started: list[tuple[Component, ServerHandle]] = []
        try:
            for comp in topo.components:
                on = self.nodes[comp.node_index]
                # Its own address first: a multi-node worker's ranks all name their leader (rank 0), itself
                # included (`--dist-init-addr {host:prefill-0}:8300`).
                port = self.port_for(on) if self.port_for is not None else comp.recipe.port
                addresses[comp.name] = (on.host, port)
                resolved = topo.resolve(comp, addresses)
                if self.port_for is not None:
                    resolved = resolved.with_port(port)
                resolved = resolved.model_copy(update={"serve_group": topo.serve_group})
                if self.marker is not None:
                    env, server_id = self.marker
                    resolved = resolved.model_copy(
                        update={"env": {**resolved.env, env: self.marker_id(server_id, comp.name)}})
                recipe_c = self.translate(comp, topo, resolved)
                if recipe_c is None:
                    log.info("topology: %s is not needed by the %s backend", comp.name, self.inner.name)
                    continue
                if recipe_c is not resolved:
                    # A translation may name components again (the simulator's router lists its workers).
                    recipe_c = topo.resolve(comp.model_copy(update={"recipe": recipe_c}), addresses)
                log.info("topology: starting %s (%s) on %s", comp.name, comp.role, on.name)
                h = self.inner.start(recipe_c, on)
                h.extra["component"] = comp.name
                h.extra["role"] = comp.role
                started.append((comp, h))
                addresses[comp.name] = (on.host, recipe_c.port)  # the port the backend really used
        except BaseException as exc:
            logs = self._stop_all([h for _c, h in started], grace_s=5.0, errors=[])
            if isinstance(exc, EngineError):
                raise
            raise EngineError(f"starting topology failed: {exc}", log_tail=logs[-4000:]) from exc
        entry = next(h for c, h in started if c.name == topo.entry)
        return dataclasses.replace(
            entry, backend=f"topology:{self.inner.name}",
            extra={**entry.extra, _COMPONENTS: [dataclasses.asdict(h) for _c, h in started],
                   "topology_fingerprint": topo.fingerprint(), "nodes": [n.name for n in self.nodes[:topo.nodes]]})

    # -------------------------------------------------------------------------------------- readiness
    def wait_ready(self, handle: ServerHandle, deadline_s: float | None = None) -> None:
        """Wait for the entry (a router is ready only once its workers are), failing as soon as any
        component has died: a dead prefill worker must not cost the whole readiness timeout."""
        parts = component_handles(handle)
        entry = next((p for p in parts if p.id == handle.id), parts[-1])
        timeout = deadline_s if deadline_s is not None else 3600.0
        end = time.monotonic() + timeout
        while True:
            dead = [p for p in parts if not self.inner.is_alive(p)]
            if dead:
                names = ", ".join(str(p.extra.get("component", p.id)) for p in dead)
                raise EngineError(f"topology component(s) died before ready: {names}",
                                  log_tail=self._tails(dead))
            left = end - time.monotonic()
            if left <= 0:
                raise EngineError(f"topology not ready after {timeout:.0f}s", log_tail=self._tails(parts))
            try:
                self.inner.wait_ready(entry, deadline_s=min(left, 15.0))
            except EngineError:
                if time.monotonic() >= end:
                    raise
                continue
            else:
                handle.engine_version = entry.engine_version
                handle.image_digest = entry.image_digest
                return

    def is_alive(self, handle: ServerHandle) -> bool:
        """All components run: one dead worker is a dead server (its requests fail or hang)."""
        return all(self.inner.is_alive(p) for p in component_handles(handle))

    def logs(self, handle: ServerHandle, tail: int | None = None) -> str:
        """Every component's log under a header naming it, its role and its node."""
        return self._tails(component_handles(handle), tail)

    def _tails(self, parts: Sequence[ServerHandle], tail: int | None = 60) -> str:
        out = []
        for p in parts:
            try:
                text = self.inner.logs(p, tail)
            except Exception as exc:  # a vanished container still lets the others' logs through
                text = f"(logs unavailable: {exc})"
            out.append(f"===== {p.extra.get('component', p.id)} ({p.extra.get('role', '?')}) on {p.node} =====\n{text}")
        return "\n".join(out)

    # ------------------------------------------------------------------------------------------- stop
    def stop(self, handle: ServerHandle, grace_s: float = 30.0) -> str:
        """Stop every component, router first (so no new requests reach a stopping worker), then the
        workers; each stop is tried even if an earlier one failed. Idempotent."""
        errors: list[str] = []
        text = self._stop_all(component_handles(handle), grace_s=grace_s, errors=errors)
        if errors:
            raise EngineError("stopping topology: " + "; ".join(errors), log_tail=text[-4000:])
        return text

    def _stop_all(self, parts: Sequence[ServerHandle], *, grace_s: float, errors: list[str]) -> str:
        out = []
        for p in reversed(list(parts)):
            name = p.extra.get("component", p.id)
            try:
                text = self.inner.stop(p, grace_s=grace_s)
            except Exception as exc:
                errors.append(f"{name}: {exc}")
                text = f"(stop failed: {exc})"
            out.append(f"===== {name} ({p.extra.get('role', '?')}) on {p.node} =====\n{text}")
        return "\n".join(reversed(out))
