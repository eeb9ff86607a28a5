"""Build the SGLang serve recipe of a serve group: the launch InferenceX's own script makes, as data.

InferenceX runs one bash script per model x precision x GPU [x MTP]
(`benchmarks/single_node/fixed_seq_len/{prefix}_{precision}_{gpu}[_sglang][_mtp].sh`); each computes its
flags and env from TP/EP/DP-attention/CONC/ISL/OSL and starts `python3 -m sglang.launch_server` (or
`sglang serve` for DeepSeek-V4). Those choices are rules in `recipes/data/sglang.yaml` (schema at its top):
shared rules first (every MTP script, every script of a model family, the plain and `_mtp` script of one
model x precision x GPU), then each script's own rule and its conditional sub-rules. This module only walks
the table: it derives the facts of the group, applies every matching rule in order and renders argv/env/files.

The server is sized for the group's highest concurrency (`conc` = `group.max_conc`): one server boot serves
every concurrency of the group. A topology no script covers gets the table's generic `fallback` rule (a
plain TP/EP SGLang launch), so every planned group builds; the recipe records which rule it came from in
`components["sglang-rules"]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infersweep.config.quirks import ModelQuirks
from infersweep.plan.models import ServeGroup
from infersweep.recipes.common import check_single_server, mount_hf_cache, topology_components
from infersweep.recipes.errors import RecipeError
from infersweep.recipes.hardware import gpu_for_runner
from infersweep.recipes.model import CONFIG_DIR, Recipe
from infersweep.recipes.ruledata import evaluate, load_table, matches

#: Every InferenceX SGLang script listens on all interfaces: the server runs in a container, the client outside it.
LISTEN_HOST = "0.0.0.0"  # noqa: S104
#: Loading a DeepSeek-size checkpoint and capturing CUDA graphs can take long; InferenceX waits without limit.
READY_TIMEOUT_S = 3600.0

BASE_ENV: dict[str, str] = {
    # Download is a separate task; serving reads the finished cache.
    "HF_HUB_OFFLINE": "1",
    # A user site-packages on the host must not shadow the image's SGLang (InferenceX's PYTHONNOUSERSITE=1 prefix).
    "PYTHONNOUSERSITE": "1",
}


def _where(group: ServeGroup) -> str:
    return (f"serve group {group.id} ({group.config_key} isl={group.isl} osl={group.osl} tp={group.tp} "
            f"ep={group.ep}{' dp-attn' if group.dp_attn else ''} spec-decoding={group.spec_decoding})")


def facts_of(group: ServeGroup) -> dict[str, Any]:
    """What the rules may branch on: the InferenceX workflow inputs of the group at its highest concurrency."""
    spec = gpu_for_runner(group.runner)
    # A GPU the hardware table does not know (e.g. rtx6000pro) is named by the runner label's first word; no
    # script rule matches it, so the fallback rules build its recipe.
    gpu = spec.name if spec else group.runner.split(":")[-1].split("-")[0].lower()
    return {
        "model": group.model,
        "model_prefix": group.model_prefix,
        "precision": group.precision,
        "gpu": gpu,
        "vendor": spec.vendor if spec else "unknown",
        "runner": group.runner,
        "framework": group.framework,
        "image": group.image,
        "isl": group.isl,
        "osl": group.osl,
        "conc": group.max_conc,
        "tp": group.tp,
        "ep": group.ep,
        "dp_attn": group.dp_attn,
        "pp": group.pp,
        "dcp_size": group.dcp_size,
        "pcp_size": group.pcp_size,
        "spec_decoding": group.spec_decoding,
        "max_model_len": group.max_model_len,
    }


def _render(value: Any, facts: Mapping[str, Any]) -> str:
    out = evaluate(value, facts)
    if isinstance(out, bool):
        return "true" if out else "false"
    return str(out)


def apply_rules(facts: Mapping[str, Any], table: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every matching rule in table order (later rules override earlier ones).

    Returns {launcher, args: {flag: value | True}, env, files, served_model_name, rules: [names]}; a flag set to
    True is bare, a flag or env var set to null by a later rule is removed. When no rule names a launcher (no
    InferenceX script covers the topology), the table's `fallback` rules are applied instead.
    """
    table = table if table is not None else load_table("sglang")
    state = _walk(table.get("rules") or [], facts)
    if state["launcher"] is None:
        state = _walk(table.get("fallback") or [], facts)
        state["fallback"] = True
    return state


def _walk(rules: list[dict[str, Any]], facts: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = {"launcher": None, "args": {}, "env": {}, "files": {}, "served_model_name": False,
                             "rules": [], "fallback": False, "unscripted": [], "model_flag": "--model-path"}
    for rule in rules:
        if not matches(rule.get("when"), facts):
            continue
        state["rules"].append(rule.get("name", "?"))
        if "launcher" in rule:
            state["launcher"] = rule["launcher"]
        if "model_flag" in rule:
            state["model_flag"] = rule["model_flag"]
        if rule.get("unscripted"):
            state["unscripted"].append(rule.get("name", "?"))
        if "served_model_name" in rule:
            state["served_model_name"] = bool(rule["served_model_name"])
        for key in ("args", "env", "files"):
            for name, value in (rule.get(key) or {}).items():
                if value is None or value is False:
                    state[key].pop(name, None)
                else:
                    state[key].pop(name, None)  # a re-set flag moves to where the later rule puts it
                    state[key][name] = value
    return state


def _argv(state: Mapping[str, Any], facts: Mapping[str, Any], launchers: Mapping[str, list[str]], *, model: str,
          port: int, served_model_name: str | None, files: Mapping[str, str]) -> list[str]:
    launcher = launchers.get(state["launcher"])
    if not launcher:
        raise RecipeError(f"sglang rules name an unknown launcher {state['launcher']!r} (known: {sorted(launchers)})")
    argv = [*launcher, state["model_flag"], model, "--host", LISTEN_HOST, "--port", str(port)]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    for flag, value in state["args"].items():
        if isinstance(value, str) and value.startswith("@file:"):
            name = value.removeprefix("@file:")
            if name not in files:
                raise RecipeError(f"sglang rule flag {flag} names file {name!r} that no rule generates")
            argv += [flag, f"{CONFIG_DIR}/{name}"]
            continue
        if isinstance(value, list):
            argv += [flag, *(_render(v, facts) for v in value)]
            continue
        out = value if value is True else evaluate(value, facts)
        if out is None or out is False:
            continue  # a formula that says "not for this topology" (bash: the flag is only added when ...)
        if out is True:
            argv.append(flag)
        else:
            argv += [flag, str(out)]
    return argv


def build_recipe(
    group: ServeGroup,
    quirks: ModelQuirks | None,
    *,
    port: int = 8888,
    hf_cache: str | None = None,
    served_model_name: str | None = None,
) -> Recipe:
    """The SGLang serve recipe for `group` (framework `sglang`, single-node).

    `quirks` are not consulted: every SGLang choice of InferenceX lives in its scripts, hence in the rule table.
    `hf_cache` is the node's Hugging Face hub cache, mounted at /mnt/hf_hub_cache (HF_HUB_CACHE points there).
    """
    del quirks
    check_single_server(group, "sglang", port, _where(group))
    table = load_table("sglang")
    facts = facts_of(group)
    try:
        state = apply_rules(facts, table)
        if state["launcher"] is None:
            raise RecipeError("no rule (not even a fallback) names a launcher")
        files = {name: str(evaluate(text, facts)) if str(text).startswith("=") else str(text)
                 for name, text in state["files"].items()}
        served = served_model_name or (group.model if state["served_model_name"] else None)
        argv = _argv(state, facts, table.get("launchers") or {}, model=group.model, port=port,
                     served_model_name=served, files=files)
        env = dict(BASE_ENV)
        for name, value in state["env"].items():
            out = evaluate(value, facts)
            if out is not None:
                env[name] = _render(out, facts)
    except RecipeError as exc:
        raise RecipeError(f"{_where(group)}: {exc}") from exc

    mounts = mount_hf_cache(env, hf_cache)
    components = topology_components(group)
    if state["fallback"]:
        # No InferenceX script covers this topology: say so in the recipe (and its fingerprint).
        components["sglang-rules"] = "fallback"
    elif state["unscripted"]:
        components["sglang-rules"] = "unscripted: " + "; ".join(state["unscripted"])
    return Recipe(
        image=group.image,
        argv=tuple(argv),
        env=env,
        gpus=group.gpus,
        port=port,
        mounts=mounts,
        model=group.model,
        served_model_name=served,
        ready_timeout_s=READY_TIMEOUT_S,
        serve_group=group.id,
        components=components,
        framework="sglang",
        files=files,
    )
