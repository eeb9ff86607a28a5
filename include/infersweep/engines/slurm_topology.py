"""A multinode serve group as one Slurm job: every component of its `TopologyRecipe` is one `srun` step.

`TopologyEngine` starts components one by one through a per-process backend; on Slurm the whole group is
one allocation instead, as InferenceX's multi-node jobs are. Addresses are known before submission (the
leased nodes' hosts and the components' ports), so every `{url|host|port:NAME}` placeholder is filled here
and the job script starts the workers first and the router last. The simulator runs under Slurm too
(`translate` + `command` turn each component into an `infersweep sim …` command), which is how the backend
is tested against a real slurmctld/slurmd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from infersweep.config.inventory import Node
from infersweep.engines.base import Engine, EngineError, ServerHandle
from infersweep.engines.slurm import SlurmEngine, SlurmJobSpec, SlurmProcess
from infersweep.engines.topology import PortPicker, Translate
from infersweep.recipes.model import Recipe
from infersweep.recipes.topology import TopologyRecipe

#: The command line of a (translated) component on its node; default: the recipe's argv as it is.
Command = Callable[[Recipe, Node], Sequence[str]]


class SlurmTopologyEngine(Engine):
    """Submit a topology as one Slurm job on its leased nodes; readiness, liveness and stop are the job's."""

    name = "slurm"

    def __init__(self, slurm: SlurmEngine, topology: TopologyRecipe | None = None, nodes: Sequence[Node] = (), *,
                 translate: Translate | None = None, command: Command | None = None, port_for: PortPicker = None,
                 sbatch_args: Sequence[str] = ()) -> None:
        self.slurm = slurm
        self.topology = topology
        self.nodes = list(nodes)
        self.translate = translate
        self.command = command
        self.port_for = port_for
        self.sbatch_args = tuple(sbatch_args)

    def job_spec(self) -> SlurmJobSpec:
        """The job for this topology on `self.nodes` (node_index order), placeholders filled."""
        topo = self.topology
        if topo is None:
            raise EngineError("SlurmTopologyEngine needs the topology it runs")
        if len(self.nodes) < topo.nodes:
            raise EngineError(f"topology needs {topo.nodes} node(s), {len(self.nodes)} leased")
        ports = {c.name: self.port_for(self.nodes[c.node_index]) if self.port_for else c.recipe.port
                 for c in topo.components}
        addresses = {c.name: (self.nodes[c.node_index].host, ports[c.name]) for c in topo.components}
        procs = []
        for comp in topo.components:
            node = self.nodes[comp.node_index]
            recipe = topo.resolve(comp, addresses)
            if self.port_for is not None:
                recipe = recipe.with_port(ports[comp.name])
            recipe = recipe.model_copy(update={"serve_group": topo.serve_group})
            if self.translate is not None:
                translated = self.translate(comp, topo, recipe)
                if translated is None:
                    continue
                # The translation may name other components again (the simulator's router): fill those too.
                recipe = topo.resolve(comp.model_copy(update={"recipe": translated}), addresses)
            env = dict(recipe.env)
            if comp.gpu_ids:
                # Applied inside the step after Slurm's own, so packed workers keep the GPUs placement gave them.
                env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, comp.gpu_ids))
            argv = tuple(self.command(recipe, node)) if self.command else recipe.argv
            # Readiness also waits for each worker's head rank; services (etcd, NATS) and ranks > 0 serve no
            # OpenAI API, and the entry is waited for last by the job itself.
            serves = comp.role != "router" and "." not in comp.name and comp.name != topo.entry
            procs.append(SlurmProcess(
                name=comp.name, role=comp.role, node=node.name, argv=argv, env=env,
                port=recipe.port if serves else None, host=node.host))
        entry = topo.entry_component
        return SlurmJobSpec(serve_group=topo.serve_group or "topology", processes=tuple(procs), entry=topo.entry,
                            port=ports[topo.entry], host=self.nodes[entry.node_index].host,
                            ready_timeout_s=entry.recipe.ready_timeout_s, sbatch_args=self.sbatch_args)

    def start(self, recipe: Recipe | None = None, node: Node | None = None) -> ServerHandle:
        """Submit the group's job and return at once (`recipe`/`node` are the entry's; the topology rules)."""
        handle = self.slurm.start_job(self.job_spec(), nodes=self.nodes)
        handle.extra["topology_fingerprint"] = self.topology.fingerprint() if self.topology else None
        handle.extra["nodes"] = [n.name for n in self.nodes]
        return handle

    def wait_ready(self, handle: ServerHandle, deadline_s: float | None = None) -> None:
        self.slurm.wait_ready(handle, deadline_s)

    def is_alive(self, handle: ServerHandle) -> bool:
        return self.slurm.is_alive(handle)

    def logs(self, handle: ServerHandle, tail: int | None = None) -> str:
        return self.slurm.logs(handle, tail)

    def stop(self, handle: ServerHandle, grace_s: float = 30.0) -> str:
        return self.slurm.stop(handle, grace_s)
