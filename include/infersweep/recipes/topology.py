"""Multi-process topologies: a serve group whose server is several processes, possibly on several nodes.

A disaggregated group (InferenceX `multinode: true, disagg: true`) runs N prefill workers and M decode
workers plus a router/frontend the client talks to; a multi-node aggregated group runs one worker spread
over several nodes. `WorkerPool` is the plan's view of one pool; `place_pools` decides which leased node
each worker rank runs on; `TopologyRecipe` is the data an engine backend starts (one `Component` per
process), so every backend (simulated, Docker, Slurm) starts the same processes in the same places.

Placement follows srt-slurm, which InferenceX's multi-node jobs run: pools never share a node; a worker
that needs at least a node's GPUs gets whole nodes (one rank per node); smaller workers are packed onto a
node side by side with disjoint GPU ids. The router runs beside the first worker, without GPUs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

from infersweep.plan.models import PoolRole, WorkerPool
from infersweep.recipes.model import Recipe

__all__ = ["Component", "Placement", "PoolRole", "Role", "TopologyRecipe", "WorkerPool", "node_demand",
           "nodes_for_pools", "place_pools", "total_nodes"]

Role = Literal["prefill", "decode", "aggregated", "router"]
#: Placeholders a component's argv or env may hold, filled once the named component is placed and started:
#: `{url:decode-0}` → `http://host:port`, `{host:decode-0}`, `{port:decode-0}` (rank 0 of that worker).
_PLACEHOLDER = re.compile(r"\{(url|host|port):([A-Za-z0-9_.-]+)\}")


class Placement(BaseModel):
    """Where one rank of one worker runs: the node (index into the group's leased nodes) and its GPU ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: PoolRole
    worker: int
    rank: int = Field(description="node rank within a worker that spans several nodes (0 = head)")
    ranks: int = Field(default=1, description="nodes the worker spans")
    node_index: int
    gpu_ids: tuple[int, ...]

    @property
    def name(self) -> str:
        """`prefill-0`, `decode-1`, or `decode-0.1` for rank 1 of a worker spanning nodes."""
        return f"{self.role}-{self.worker}" + (f".{self.rank}" if self.rank else "")


def total_nodes(pools: Sequence[WorkerPool]) -> int:
    """Nodes a topology leases: the sum of its pools' (pools never share a node)."""
    return sum(p.nodes for p in pools)


def node_demand(pools: Sequence[WorkerPool]) -> dict[str, int]:
    """Runner label → nodes, for a lease of the whole topology at once."""
    demand: dict[str, int] = {}
    for pool in pools:
        demand[pool.runner] = demand.get(pool.runner, 0) + pool.nodes
    return demand


def place_pools(pools: Sequence[WorkerPool]) -> list[Placement]:
    """Every worker rank of every pool on a node index, pools in order on consecutive nodes.

    Node indexes count from 0 over the group's nodes, pool after pool; the caller maps them onto leased
    nodes of each pool's runner label (`nodes_for_pools`).
    """
    out: list[Placement] = []
    base = 0
    for pool in pools:
        g = pool.gpus_per_worker
        if pool.nodes_per_worker > 1:
            for w in range(pool.num_worker):
                for r in range(pool.nodes_per_worker):
                    share = min(pool.gpus_per_node, g - r * pool.gpus_per_node)
                    out.append(Placement(role=pool.role, worker=w, rank=r, ranks=pool.nodes_per_worker,
                                         node_index=base + w * pool.nodes_per_worker + r,
                                         gpu_ids=tuple(range(share))))
        else:
            for w in range(pool.num_worker):
                slot = w % pool.workers_per_node
                out.append(Placement(role=pool.role, worker=w, rank=0, node_index=base + w // pool.workers_per_node,
                                     gpu_ids=tuple(range(slot * g, (slot + 1) * g))))
        base += pool.nodes
    return out


def nodes_for_pools(pools: Sequence[WorkerPool], leased: Mapping[str, Sequence[str]]) -> list[str]:
    """The group's node names in `place_pools` index order, taken from the nodes leased per runner label.

    Raises ValueError when the lease does not cover the pools (a bug: the lease asked `node_demand`).
    """
    left = {runner: list(names) for runner, names in leased.items()}
    out: list[str] = []
    for pool in pools:
        names = left.get(pool.runner, [])
        if len(names) < pool.nodes:
            raise ValueError(f"{pool.role} pool needs {pool.nodes} {pool.runner} node(s); the lease holds "
                             f"{len(names)}")
        out.extend(names[:pool.nodes])
        left[pool.runner] = names[pool.nodes:]
    return out


class Component(BaseModel):
    """One process of a topology: a worker rank, or the router/frontend."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="unique in the topology: prefill-0, decode-1, decode-0.1, router")
    role: Role
    node_index: int = Field(ge=0, description="index into the group's node list (`nodes_for_pools`)")
    gpu_ids: tuple[int, ...] = ()
    recipe: Recipe


class TopologyRecipe(BaseModel):
    """Everything needed to start a multi-process server: its components, in start order (workers first).

    The client talks to `entry` (the router, or the only aggregated worker). Argv and env values may name
    other components through `{url:NAME}`, `{host:NAME}` and `{port:NAME}`; `resolve` fills them in once
    those components have an address.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    serve_group: str | None = None
    framework: str
    components: tuple[Component, ...] = Field(min_length=1)
    entry: str = "router"
    nodes: int = Field(ge=1)
    kv_transfer: str | None = Field(default=None, description="KV transfer engine (nixl, mooncake, …)")
    router: dict[str, str] | None = Field(default=None, description="router/frontend name and version")

    @model_validator(mode="after")
    def _consistent(self) -> TopologyRecipe:
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names repeat: {names}")
        if self.entry not in names:
            raise ValueError(f"entry {self.entry!r} is not a component ({names})")
        if any(c.node_index >= self.nodes for c in self.components):
            raise ValueError(f"a component is placed past the topology's {self.nodes} node(s)")
        for c in self.components:
            for ref in _refs(c.recipe):
                if ref not in names:
                    raise ValueError(f"{c.name} refers to unknown component {ref!r}")
        return self

    @property
    def entry_component(self) -> Component:
        return next(c for c in self.components if c.name == self.entry)

    @property
    def workers(self) -> tuple[Component, ...]:
        """Every component but the router."""
        return tuple(c for c in self.components if c.role != "router")

    @property
    def gpus(self) -> int:
        """Every GPU of every worker (the denominator of throughput per GPU, as InferenceX counts it)."""
        return sum(len(c.gpu_ids) for c in self.components)

    def fingerprint(self) -> str:
        """sha256 of the components' recipe fingerprints, roles and placement (not ports or node names)."""
        payload = {
            "framework": self.framework, "entry": self.entry, "nodes": self.nodes, "kv": self.kv_transfer,
            "router": self.router,
            "components": [[c.name, c.role, c.node_index, list(c.gpu_ids), c.recipe.fingerprint()]
                           for c in self.components],
        }
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def resolve(self, component: Component, addresses: Mapping[str, tuple[str, int]]) -> Recipe:
        """`component`'s recipe with `{url|host|port:NAME}` filled from `addresses` (name → (host, port))."""
        def fill(text: str) -> str:
            def one(m: re.Match[str]) -> str:
                what, name = m.group(1), m.group(2)
                if name not in addresses:
                    raise ValueError(f"{component.name} needs {name}'s address before it starts")
                host, port = addresses[name]
                return {"url": f"http://{host}:{port}", "host": host, "port": str(port)}[what]
            return _PLACEHOLDER.sub(one, text)

        recipe = component.recipe
        return recipe.model_copy(update={"argv": tuple(fill(a) for a in recipe.argv),
                                         "env": {k: fill(v) for k, v in recipe.env.items()}})


def _refs(recipe: Recipe) -> set[str]:
    texts = [*recipe.argv, *recipe.env.values()]
    return {m.group(2) for t in texts for m in _PLACEHOLDER.finditer(t)}
