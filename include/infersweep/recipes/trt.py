"""Build the TensorRT-LLM (`trtllm-serve`) serve recipe of a serve group: argv, env and the LLM-API YAML.

The launch reproduces what InferenceX's own script (`benchmarks/single_node/fixed_seq_len/
{model-prefix}_{precision}_{gpu}_trt[_mtp].sh`) starts for the group's topology at its HIGHEST concurrency
(one server serves every concurrency of the group): the same `mpirun … trtllm-serve` flags with the same
values, the same exported env, and the same `--extra_llm_api_options`/`--config` YAML (as parsed YAML).
All of it is data in `recipes/data/trt.yaml` (schema at its top); this module only walks that table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from infersweep.config.quirks import ModelQuirks
from infersweep.plan.models import ServeGroup
from infersweep.recipes.common import check_single_server, mount_hf_cache, topology_components
from infersweep.recipes.errors import RecipeError
from infersweep.recipes.hardware import gpu_for_runner
from infersweep.recipes.model import CONFIG_DIR, Recipe
from infersweep.recipes.ruledata import Facts, evaluate, load_table, matches

#: The rule table: recipes/data/trt.yaml.
TABLE = "trt"
#: The key of a rule-data mapping that builds a list (see the table's schema).
SEQ_KEY = "=seq"


def _where(group: ServeGroup) -> str:
    return (f"serve group {group.id} ({group.config_key} isl={group.isl} osl={group.osl} tp={group.tp} "
            f"ep={group.ep}{' dp-attn' if group.dp_attn else ''} spec-decoding={group.spec_decoding})")


def facts_for(group: ServeGroup, *, port: int = 8888) -> dict[str, Any]:
    """What the rules may branch on; `conc` is the group's highest concurrency."""
    gpu = gpu_for_runner(group.runner)
    return {
        "conc": group.max_conc, "isl": group.isl, "osl": group.osl, "tp": group.tp, "ep": group.ep,
        "dp_attn": group.dp_attn, "pp": group.pp, "dcp_size": group.dcp_size, "pcp_size": group.pcp_size,
        "spec_decoding": group.spec_decoding, "model_prefix": group.model_prefix, "precision": group.precision,
        "gpu": gpu.name if gpu else "unknown", "runner": group.runner, "max_model_len": group.max_model_len,
        "model": group.model, "port": port,
    }


def select_profile(facts: Facts) -> dict[str, Any] | None:
    """The first profile of the table whose `when:` holds, or None."""
    for profile in load_table(TABLE)["profiles"]:
        if matches(profile.get("when"), facts):
            return dict(profile)
    return None


def _value(value: Any, facts: Facts) -> Any:
    """Evaluate a rule value tree: formulas/text at the leaves, `{"=seq": [...]}` lists."""
    if isinstance(value, Mapping):
        if SEQ_KEY in value:
            return _seq(value[SEQ_KEY], facts)
        return {key: _value(item, facts) for key, item in value.items()}
    if isinstance(value, list):
        return [_value(item, facts) for item in value]
    return evaluate(value, facts)


def _seq(items: list[Any], facts: Facts) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, Mapping) and "from" in item:
            if not matches(item.get("when"), facts):
                continue
            start, step, stop = (int(evaluate(item[k], facts)) for k in ("from", "step", "to"))
            out.extend(range(start, stop + 1, step))  # bash `seq FROM STEP TO`: inclusive, empty if FROM > TO
        else:
            out.append(_value(item, facts))
    return out


def _merge(into: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _tokens(items: list[Any], facts: Facts) -> list[str]:
    out: list[str] = []
    for item in items:
        if isinstance(item, Mapping):
            if matches(item.get("when"), facts):
                out += _tokens(list(item["args"]), facts)
            continue
        value = _value(item, facts)
        out.append(("true" if value else "false") if isinstance(value, bool) else str(value))
    return out


def resolve(group: ServeGroup, *, port: int = 8888) -> tuple[dict[str, Any], dict[str, Any]]:
    """(profile, facts incl. the profile's vars) for `group`; RecipeError when no profile covers it."""
    facts = facts_for(group, port=port)
    profile = select_profile(facts)
    if profile is None:
        raise RecipeError(
            f"{_where(group)}: no TensorRT-LLM rule for model-prefix {facts['model_prefix']!r} precision "
            f"{facts['precision']!r} gpu {facts['gpu']!r} spec-decoding {facts['spec_decoding']!r}; add a "
            f"profile to recipes/data/{TABLE}.yaml (InferenceX has no script "
            f"{facts['model_prefix']}_{facts['precision']}_{facts['gpu']}_trt"
            f"{'_mtp' if facts['spec_decoding'] == 'mtp' else ''}.sh we port)")
    for name, value in (profile.get("vars") or {}).items():
        facts[name] = _value(value, facts)
    facts["config"] = f"{CONFIG_DIR}/{profile['config_file']}"
    return profile, facts


def build_recipe(
    group: ServeGroup,
    quirks: ModelQuirks | None,
    *,
    port: int = 8888,
    hf_cache: str | None = None,
    served_model_name: str | None = None,
) -> Recipe:
    """The TensorRT-LLM serve recipe for `group` (framework `trt`).

    `quirks` are not consulted: every TRT-LLM choice InferenceX makes is in the rule table. trtllm-serve
    (1.3.0rc14) has no option to rename the served model: it serves under its MODEL argument, so a
    `served_model_name` other than the group's model is an error.
    """
    del quirks
    check_single_server(group, "trt", port, _where(group))
    if served_model_name not in (None, group.model):
        raise RecipeError(
            f"{_where(group)}: trtllm-serve serves the model under its MODEL argument ({group.model}); it has "
            f"no option to serve it as {served_model_name!r}")
    try:
        profile, facts = resolve(group, port=port)
        table = load_table(TABLE)
        argv = [*(str(t) for t in profile.get("launcher", table["launcher"])),
                *_tokens(list(profile["argv"]), facts)]
        if "--host" not in argv:
            # trtllm-serve listens on localhost by default, but the engine is probed from outside its
            # container; --host is a place flag, so this never changes a result. Right after MODEL.
            at = argv.index("trtllm-serve") + 2
            argv[at:at] = ["--host", str(table["listen_host"])]
        env: dict[str, str] = {k: str(v) for k, v in (table.get("env") or {}).items()}
        for rule in profile.get("env") or []:
            if matches(rule.get("when"), facts):
                env.update({k: str(_value(v, facts)) for k, v in rule["set"].items()})
        body: dict[str, Any] = {}
        for rule in profile.get("config") or []:
            if matches(rule.get("when"), facts):
                _merge(body, _value(rule["set"], facts))
    except RecipeError as exc:
        raise RecipeError(f"{_where(group)}: {exc}") from exc

    mounts = mount_hf_cache(env, hf_cache)
    components = topology_components(group)
    return Recipe(
        image=group.image,
        argv=tuple(argv),
        env=env,
        gpus=group.gpus,
        port=port,
        mounts=mounts,
        model=group.model,
        served_model_name=group.model if served_model_name else None,
        serve_group=group.id,
        components=components,
        framework="trt",
        files={profile["config_file"]: yaml.safe_dump(body, sort_keys=False, default_flow_style=None)},
    )
