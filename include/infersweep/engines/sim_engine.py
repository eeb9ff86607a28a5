"""The simulated backend: a recipe's server command runs as `infersweep sim serve …`, locally.

This is the embedded default (laptop, CI): the same process-group, readiness and stop semantics as the
local-process backend, with the recipe's flags mapped onto the simulator by `recipe_to_sim_argv`. vLLM
recipes run as they are; SGLang, TensorRT-LLM and ATOM recipes are translated (`engines/sim/flavors.yaml`)
and the server mimics that engine (`--flavor`: health, metrics names, /version).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from infersweep.config.inventory import Node
from infersweep.config.settings import SimNoiseSettings
from infersweep.engines.base import EngineError
from infersweep.engines.process import ProcessEngine
from infersweep.engines.sim.components import component_sim_argv
from infersweep.engines.sim.config import DEFAULT_GPU_PROFILE, recipe_to_sim_argv, sim_command
from infersweep.engines.sim.profiles import (
    ProfileError,
    find_model_profile,
    get_gpu_profile,
    get_model_profile,
)
from infersweep.recipes.hardware import gpu_for_runner
from infersweep.recipes.model import Recipe
from infersweep.recipes.topology import Component, TopologyRecipe

#: Fault injection (reliability tests, drills): JSON `{selector: [sim fault flags]}`, where a selector is
#: "*", "tp=N" or a serve-group id, e.g. `{"tp=2": ["--die-after-requests", "9", "--fault-once", "/tmp/m"]}`.
#: Only the sim's fault flags are accepted, so this can never change what a healthy server measures.
FAULTS_ENV = "INFERSWEEP_SIM_FAULTS"
_FAULT_FLAGS = ("--fail-at-start", "--die-after-requests", "--startup-delay", "--fault-once")


def fault_args(recipe: Recipe, spec: str | None = None, *, component: str | None = None) -> list[str]:
    """The fault flags `INFERSWEEP_SIM_FAULTS` (or `spec`) injects into this recipe's server.

    `component` (a topology worker's name, e.g. `decode-1`) is a selector too, so a drill can kill one
    worker of a disaggregated group."""
    raw = os.environ.get(FAULTS_ENV, "") if spec is None else spec
    if not raw.strip():
        return []
    try:
        faults = json.loads(raw)
        if not isinstance(faults, dict) or not all(isinstance(v, list) for v in faults.values()):
            raise ValueError("expected a JSON object of selector -> list of flags")
    except ValueError as exc:
        raise EngineError(f"{FAULTS_ENV}: {exc}; e.g. {{\"tp=2\": [\"--die-after-requests\", \"9\"]}}") from exc
    tp = _recipe_tp(recipe.argv)
    out: list[str] = []
    for selector, flags in faults.items():
        if selector in ("*", f"tp={tp}", recipe.serve_group) or (component is not None and selector == component):
            bad = [f for f in flags if str(f).startswith("-") and str(f).split("=")[0] not in _FAULT_FLAGS]
            if bad:
                raise EngineError(f"{FAULTS_ENV}: only fault flags are allowed ({', '.join(_FAULT_FLAGS)}), "
                                  f"got {bad}")
            out += [str(f) for f in flags]
    return out


#: Tensor-parallel flags of every framework's launcher (vLLM, SGLang, TensorRT-LLM, ATOM).
_TP_FLAGS = ("--tensor-parallel-size", "-tp", "--tp", "--tp-size", "--tp_size", "--tensor_parallel_size")


def _recipe_tp(argv: Sequence[str]) -> str:
    """The recipe's tensor parallelism as written in its argv ("1" when not given)."""
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag in _TP_FLAGS:
            if eq:
                return value
            if i + 1 < len(argv):
                return argv[i + 1]
    return "1"



class SimConfigError(EngineError):
    """The sweep asks the simulator for something it cannot simulate (a model without a profile)."""

    kind = "config_error"
    transient = False

#: Env var naming the topology component a process simulates (set by `component_recipe`).
COMPONENT_ENV = "INFERSWEEP_SIM_COMPONENT"


class SimulatedEngine(ProcessEngine):
    """Run recipes on the simulator. Results carry engine version `sim-<version>` from `/version`."""

    name = "sim"

    def __init__(
        self,
        *,
        model_profile: str | None = None,
        gpu_profile: str | None = None,
        time_scale: float = 1.0,
        extra_args: Sequence[str] = (),
        python: str | None = None,
        log_dir: str | Path | None = None,
        poll_interval_s: float = 0.5,
        http_timeout_s: float = 5.0,
        noise: SimNoiseSettings | None = None,
    ) -> None:
        super().__init__(log_dir=log_dir, poll_interval_s=poll_interval_s, http_timeout_s=http_timeout_s)
        try:
            if model_profile:
                get_model_profile(model_profile)
            if gpu_profile:
                get_gpu_profile(gpu_profile)
        except ProfileError as exc:
            raise EngineError(str(exc)) from exc
        if time_scale <= 0:
            raise EngineError(f"time_scale must be > 0, got {time_scale}")
        self.model_profile = model_profile
        self.gpu_profile = gpu_profile
        self.time_scale = time_scale
        self.extra_args = tuple(extra_args)
        self.python = python
        self.noise = noise

    def gpu_profile_for(self, node: Node | None) -> str:
        """Explicit profile, else the node's `gpu-profile`, else its runner label's GPU, else h100."""
        if self.gpu_profile:
            return self.gpu_profile
        if node is not None:
            if node.gpu_profile:
                return node.gpu_profile
            spec = gpu_for_runner(node.runner)
            if spec is not None:
                return spec.name
        return DEFAULT_GPU_PROFILE

    def noise_args(self, recipe: Recipe) -> list[str]:
        """The noise flags of this recipe's server (none when the sweep's `sim.noise` is off).

        Each serve group gets its own noise path: the sweep's seed is mixed with the group id (stable
        across processes), as separate servers on separate nodes do not drift together."""
        if self.noise is None:
            return []
        args = self.noise.sim_args()
        if args and recipe.serve_group:
            digest = hashlib.sha256(f"{self.noise.seed}:{recipe.serve_group}".encode()).digest()
            args[args.index("--noise-seed") + 1] = str(int.from_bytes(digest[:4], "big"))
        return args

    def command(self, recipe: Recipe, node: Node | None) -> list[str]:
        if recipe.argv[:2] == ("infersweep", "sim"):
            return self._component_command(recipe, node)
        if self.model_profile is None and find_model_profile(recipe.model) is None:
            # A config problem, not a server failure: classified so it fails fast instead of being retried.
            raise SimConfigError(
                f"the simulator has no model profile for {recipe.model!r}; set `sim: {{model-profile: NAME}}` in "
                "the sweep file (NAME from `infersweep sim profiles`) or add a profile file to "
                "infersweep/engines/sim/profile_data/"
            )
        try:
            argv = recipe_to_sim_argv(recipe, model_profile=self.model_profile,
                                      gpu_profile=self.gpu_profile_for(node), time_scale=self.time_scale,
                                      extra=[*self.extra_args, *self.noise_args(recipe), *fault_args(recipe)])
        except ValueError as exc:
            raise EngineError(f"cannot run this recipe on the simulator: {exc}") from exc
        return sim_command(argv, self.python)

    def _component_command(self, recipe: Recipe, node: Node | None) -> list[str]:
        """A topology component `component_recipe` translated: workers get this engine's profiles, time scale,
        extra flags, their own noise path and the faults whose selector names them (the router's worker URLs
        were filled in by the topology engine)."""
        argv = list(recipe.argv[1:])
        name = recipe.env.get(COMPONENT_ENV, "")
        if argv[:2] == ["sim", "serve"]:
            if self.model_profile is None and find_model_profile(recipe.model) is None:
                raise SimConfigError(
                    f"the simulator has no model profile for {recipe.model!r}; set `sim: {{model-profile: NAME}}` "
                    "in the sweep file (NAME from `infersweep sim profiles`)")
            own = recipe.model_copy(update={"serve_group": f"{recipe.serve_group or ''}/{name}"})
            argv += [*(["--model-profile", self.model_profile] if self.model_profile else []),
                     "--gpu-profile", self.gpu_profile_for(node), "--time-scale", repr(float(self.time_scale)),
                     *self.extra_args, *self.noise_args(own), *fault_args(recipe, component=name or None)]
        return sim_command(argv, self.python)


def component_recipe(component: Component, topology: TopologyRecipe, recipe: Recipe) -> Recipe:
    """The recipe `SimulatedEngine.start` runs for one topology component (`engines.topology.Translate`).

    `recipe` is the component's recipe with placeholders filled and its port chosen; the result runs
    `infersweep sim serve … --role prefill|decode|aggregated --kv-transfer E` for a worker's head rank,
    `infersweep sim router --prefill … --decode …` for the topology's entry router, and `infersweep sim idle`
    for what the simulator needs nothing from (ranks > 0, etcd, NATS), on `recipe.port`
    (`sim.components.component_sim_argv`). The router's `{url:NAME}` worker placeholders are left for the
    topology engine, which fills them from the workers it started. Raises SimConfigError when the component
    cannot be simulated.
    """
    try:
        argv = component_sim_argv(component, topology, recipe=recipe)
    except ValueError as exc:
        raise SimConfigError(f"cannot run {component.name} on the simulator: {exc}") from exc
    return recipe.model_copy(update={"argv": ("infersweep", *argv), "framework": "sim",
                                     "env": {**recipe.env, COMPONENT_ENV: component.name}})
