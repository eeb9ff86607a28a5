"""The simulated backend: a recipe's `vllm serve …` argv runs as `infersweep sim serve …`, locally.

This is the embedded default (laptop, CI): the same process-group, readiness and stop semantics as the
local-process backend, with the recipe's flags mapped onto the simulator by `recipe_to_sim_argv`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from infersweep.config.inventory import Node
from infersweep.engines.base import EngineError
from infersweep.engines.process import ProcessEngine
from infersweep.engines.sim.config import DEFAULT_GPU_PROFILE, recipe_to_sim_argv, sim_command
from infersweep.engines.sim.profiles import (
    ProfileError,
    find_model_profile,
    get_gpu_profile,
    get_model_profile,
)
from infersweep.recipes.hardware import gpu_for_runner
from infersweep.recipes.model import Recipe


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

    def command(self, recipe: Recipe, node: Node | None) -> list[str]:
        if self.model_profile is None and find_model_profile(recipe.model) is None:
            raise EngineError(
                f"the simulator has no model profile for {recipe.model!r}; pass model_profile= (one of: "
                "`infersweep sim profiles`) or add a profile file to infersweep/engines/sim/profile_data/"
            )
        try:
            argv = recipe_to_sim_argv(recipe, model_profile=self.model_profile,
                                      gpu_profile=self.gpu_profile_for(node), time_scale=self.time_scale,
                                      extra=self.extra_args)
        except ValueError as exc:
            raise EngineError(f"cannot run this recipe on the simulator: {exc}") from exc
        return sim_command(argv, self.python)
