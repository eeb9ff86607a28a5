"""Build the ATOM (AMD ROCm/ATOM) serve recipe of a serve group, from the rule table `data/atom.yaml`.

The argv is the launch InferenceX's `*_mi355x_atom[_mtp].sh` scripts make for the same serve topology at
the group's highest concurrency: `python3 -m atom.entrypoints.openai_server --model M --server-port P …`,
with the scripts' flags in their order and their mixed `_`/`-` spellings (`-tp`, `--kv_cache_dtype`,
`--no-enable_prefix_caching`), and the env they export (`OMP_NUM_THREADS`, ATOM/AITER switches).
This module only walks the table; every model-, precision-, layout- or length-specific choice is data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from infersweep.config.quirks import ModelQuirks
from infersweep.plan.models import ServeGroup
from infersweep.recipes.common import check_single_server, mount_hf_cache, topology_components
from infersweep.recipes.errors import RecipeError
from infersweep.recipes.hardware import gpu_for_runner
from infersweep.recipes.model import Recipe
from infersweep.recipes.ruledata import evaluate, load_table, matches

#: Loading a DeepSeek-size checkpoint and capturing graphs takes long; InferenceX waits while the process lives.
READY_TIMEOUT_S = 3600.0

BASE_ENV: dict[str, str] = {
    # Download is a separate task; serving reads the finished cache without taking hub file locks.
    "HF_HUB_OFFLINE": "1",
    # A user site-packages on the host must not shadow the image's ATOM.
    "PYTHONNOUSERSITE": "1",
}

TABLE = "atom"


def _where(group: ServeGroup) -> str:
    return (f"serve group {group.id} ({group.config_key} isl={group.isl} osl={group.osl} tp={group.tp} "
            f"ep={group.ep}{' dp-attn' if group.dp_attn else ''} spec-decoding={group.spec_decoding})")


def facts_of(group: ServeGroup) -> dict[str, Any]:
    """What the rules may test and compute with; `conc` is the group's highest concurrency."""
    gpu = gpu_for_runner(group.runner)
    return {
        "conc": group.max_conc, "isl": group.isl, "osl": group.osl, "tp": group.tp, "ep": group.ep,
        "dp_attn": group.dp_attn, "pp": group.pp, "dcp_size": group.dcp_size, "pcp_size": group.pcp_size,
        "spec_decoding": group.spec_decoding, "model_prefix": group.model_prefix, "precision": group.precision,
        "gpu": gpu.name if gpu else "unknown", "runner": group.runner, "framework": group.framework,
        "image": group.image, "max_model_len": group.max_model_len,
    }


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _expand(items: Sequence[Any], facts: Mapping[str, Any], fragments: Mapping[str, Any], argv: list[str],
            env: dict[str, str], depth: int = 0) -> None:
    """Append the flags (and env) of rule ITEMs to argv / env; see the schema in data/atom.yaml."""
    if depth > 8:
        raise RecipeError("recipes/data/atom.yaml: fragments nest too deep (a fragment uses itself?)")
    for item in items:
        if isinstance(item, str):
            argv.append(item)
        elif isinstance(item, list):
            if len(item) != 2:
                raise RecipeError(f"recipes/data/atom.yaml: an argument item is [flag, value], got {item!r}")
            argv += [item[0], _text(evaluate(item[1], facts))]
        elif isinstance(item, dict) and "use" in item:
            name = item["use"]
            if name not in fragments:
                raise RecipeError(f"recipes/data/atom.yaml: unknown fragment {name!r}")
            _expand(fragments[name], facts, fragments, argv, env, depth + 1)
        elif isinstance(item, dict) and "when" in item:
            if matches(item["when"], facts):
                env.update({k: _text(evaluate(v, facts)) for k, v in (item.get("env") or {}).items()})
                _expand(item.get("args") or [], facts, fragments, argv, env, depth + 1)
        else:
            raise RecipeError(f"recipes/data/atom.yaml: cannot read argument item {item!r}")


def select_script(group: ServeGroup, facts: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The table entry (one InferenceX script family) that serves `group`; RecipeError when none does."""
    facts = facts if facts is not None else facts_of(group)
    table = load_table(TABLE)
    for entry in table["scripts"]:
        if matches(entry.get("when"), facts):
            return dict(entry)
    raise RecipeError(
        f"{_where(group)}: no ATOM rule for model-prefix {facts['model_prefix']!r}, precision "
        f"{facts['precision']!r}, gpu {facts['gpu']!r}, spec-decoding {facts['spec_decoding']!r} "
        f"(InferenceX has no {facts['model_prefix']}_{facts['precision']}_{facts['gpu']}_atom"
        f"{'_' + str(facts['spec_decoding']) if facts['spec_decoding'] != 'none' else ''}.sh); "
        "add one to recipes/data/atom.yaml"
    )


def build_recipe(
    group: ServeGroup,
    quirks: ModelQuirks | None,
    *,
    port: int = 8888,
    hf_cache: str | None = None,
    served_model_name: str | None = None,
) -> Recipe:
    """The ATOM serve recipe for `group` (framework `atom`, single-node).

    `quirks` are not used: InferenceX's ATOM scripts carry every model-specific choice, and they live in
    the rule table (vLLM quirks such as extra serve flags would not apply to ATOM's argument parser).
    ATOM has no `--served-model-name`: it serves under its `--model` value, so `served_model_name` may only
    be None or the group's model. `hf_cache` is the node's HF hub cache, mounted at /mnt/hf_hub_cache.
    """
    del quirks  # see the docstring
    check_single_server(group, "atom", port, _where(group))
    if served_model_name not in (None, group.model):
        raise RecipeError(
            f"{_where(group)}: ATOM has no --served-model-name; it serves under its --model value "
            f"{group.model!r}, not {served_model_name!r}")

    facts = facts_of(group)
    entry = select_script(group, facts)
    table = load_table(TABLE)
    argv = [*table["launcher"], table["model-flag"], group.model, table["port-flag"], str(port)]
    script_env: dict[str, str] = {k: _text(evaluate(v, facts)) for k, v in (entry.get("env") or {}).items()}
    try:
        _expand(entry.get("args") or [], facts, table.get("fragments") or {}, argv, script_env)
    except RecipeError as exc:
        raise RecipeError(f"{_where(group)}, ATOM rule {entry.get('name')!r}: {exc}") from exc

    env = dict(BASE_ENV)
    mounts = mount_hf_cache(env, hf_cache)
    env.update(script_env)

    components = topology_components(group)
    return Recipe(
        image=group.image,
        argv=tuple(argv),
        env=env,
        gpus=group.gpus,
        port=port,
        mounts=mounts,
        model=group.model,
        served_model_name=served_model_name,
        ready_timeout_s=READY_TIMEOUT_S,
        serve_group=group.id,
        components=components,
        framework="atom",
    )
