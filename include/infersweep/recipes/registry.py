"""One entry point for every framework's recipe builder, chosen by the serve group's `framework`.

Each builder takes the same arguments as `infersweep.recipes.vllm.build_recipe` and returns a `Recipe`; a
framework without one raises UnsupportedFrameworkError naming the frameworks that have one. Builders are
imported lazily so that planning a vLLM sweep never imports the others' rule tables.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from infersweep.config.quirks import ModelQuirks
from infersweep.plan.models import ServeGroup
from infersweep.recipes.errors import UnsupportedFrameworkError
from infersweep.recipes.model import Recipe


class RecipeBuilder(Protocol):
    def __call__(self, group: ServeGroup, quirks: ModelQuirks | None, *, port: int = 8888,
                 hf_cache: str | None = None, served_model_name: str | None = None) -> Recipe: ...


#: framework → "module:function" of its builder.
BUILDERS: dict[str, str] = {
    "vllm": "infersweep.recipes.vllm:build_recipe",
    "sglang": "infersweep.recipes.sglang:build_recipe",
    "trt": "infersweep.recipes.trt:build_recipe",
    "atom": "infersweep.recipes.atom:build_recipe",
}


def builder_for(framework: str) -> RecipeBuilder:
    """The recipe builder of `framework` (UnsupportedFrameworkError when there is none, or it is not installed)."""
    target = BUILDERS.get(framework)
    if target is None:
        raise UnsupportedFrameworkError(
            f"unsupported framework {framework!r}; recipe builders exist for {', '.join(sorted(BUILDERS))} "
            "(multi-node frameworks build a topology: infersweep.recipes.disagg.build_topology)")
    module, _, name = target.partition(":")
    try:
        fn: RecipeBuilder = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise UnsupportedFrameworkError(f"framework {framework!r}: its recipe builder {target} is missing ({exc})") from exc
    return fn


def build_recipe(group: ServeGroup, quirks: ModelQuirks | None, *, port: int = 8888, hf_cache: str | None = None,
                 served_model_name: str | None = None) -> Recipe:
    """The serve recipe of `group`, by its framework's builder, with the client InferenceX's script uses."""
    from infersweep.recipes.client import client_for

    recipe = builder_for(group.framework)(group, quirks, port=port, hf_cache=hf_cache,
                                          served_model_name=served_model_name)
    return recipe.model_copy(update={"client": client_for(group)})
