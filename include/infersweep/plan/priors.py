"""Priors for the adaptive policy: what a topology is expected to reach before it is measured.

- **roofline**: the simulated engine's step-time model (the same one `infersweep sim serve` runs) driven
  offline, without noise, for the group's recipe on its GPU. It knows nothing of a real kernel's efficiency,
  so the policy calibrates it against this run's measurements before trusting it closely.
- **history**: the same topology's mean results over its latest runs in the store (same engine kind).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping

from infersweep.plan.adaptive import Observation
from infersweep.recipes.model import Recipe

log = logging.getLogger(__name__)

#: Requests per concurrency of the prior's offline run: two waves are enough for a steady-state estimate.
WAVES = 2
#: Concurrencies above this are not modelled (the offline scheduler's cost grows with the batch).
MAX_PRIOR_CONC = 4096


def history_prior(points: Mapping[int, tuple[float, float]]) -> dict[int, Observation]:
    """Observations from `sweep_state.topology_history`'s (interactivity, throughput/GPU) means."""
    return {c: Observation(c, x, y) for c, (x, y) in points.items() if x > 0 and y > 0}


def roofline_prior(recipe: Recipe, *, gpu_profile: str | None, model_profile: str | None, isl: int, osl: int,
                   concs: tuple[int, ...], gpus: int) -> dict[int, Observation]:
    """The simulator's noise-free prediction of every concurrency (empty when the simulator cannot model the
    recipe: no profile for its model or GPU, a flag it does not know, or a server that would not fit)."""
    if gpu_profile is None:
        return {}
    out = {}
    for conc in concs:
        if conc > MAX_PRIOR_CONC:
            continue
        obs = _roofline_point(recipe.model_dump_json(), gpu_profile, model_profile, isl, osl, conc, gpus)
        if obs is not None:
            out[conc] = obs
    return out


def sim_core(recipe: Recipe, gpu_profile: str, model_profile: str | None = None) -> object | None:
    """The simulator's engine for a recipe on a GPU profile, as `infersweep sim serve` builds it (its
    `roofline` and `scheduler.config` drive offline runs); None when the simulator cannot model it."""
    return _sim_core(recipe.model_dump_json(), gpu_profile, model_profile)


@functools.lru_cache(maxsize=64)
def _sim_core(recipe_json: str, gpu_profile: str, model_profile: str | None) -> object | None:
    from infersweep.engines.sim.config import parse_sim_argv, recipe_to_sim_argv
    from infersweep.engines.sim.core import SimCore
    from infersweep.engines.sim.profiles import find_model_profile

    recipe = Recipe.model_validate_json(recipe_json)
    if model_profile is None and find_model_profile(recipe.model) is None:
        return None
    try:
        argv = recipe_to_sim_argv(recipe, model_profile=model_profile, gpu_profile=gpu_profile)
        return SimCore(parse_sim_argv(argv[2:]))
    except (SystemExit, Exception) as exc:  # argparse exits on a flag the sim does not model
        log.info("no roofline prior for %s on %s: %s", recipe.model, gpu_profile, exc)
        return None


@functools.lru_cache(maxsize=4096)
def _roofline_point(recipe_json: str, gpu_profile: str, model_profile: str | None, isl: int, osl: int, conc: int,
                    gpus: int) -> Observation | None:
    """One concurrency of the prior (cached: the policy asks again after every measured point)."""
    from infersweep.engines.sim.offline import closed_loop

    core = _sim_core(recipe_json, gpu_profile, model_profile)
    if core is None:
        return None
    try:
        p = closed_loop(core.roofline, core.scheduler.config, concurrency=conc, isl=isl, osl=osl,  # type: ignore[attr-defined]
                        num_requests=max(WAVES * conc, 8))
    except RuntimeError:
        return None
    return Observation(conc, p.interactivity, p.total_throughput / gpus)
