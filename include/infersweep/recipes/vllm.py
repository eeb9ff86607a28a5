"""Build the vLLM serve recipe of a serve group: image, argv, env, GPUs, mounts, port — as data.

Two paths, both driven by data:

* A *launch profile* of `recipes/data/vllm.yaml` (`launches:`) covers a model x precision x hardware that
  InferenceX serves with its own per-model script (DeepSeek-V4, gpt-oss, Kimi-K2.5, MiniMax-M2.5): the argv,
  env and generated config files are exactly the script's, with its bash arithmetic as formulas over the
  group's facts at its highest concurrency.
* Otherwise the generic recipe: it reproduces the seed recipe (InferenceX `minimaxm3_fp8_{h200,h100}[_mtp].sh`)
  flag for flag and in its order, generalised to any vLLM group; everything model- or hardware-specific comes
  from `ModelQuirks` — the caller's, or, when the caller has none for the model (master-file-only sweeps), the
  packaged `model-defaults:` of the table; a speculative drafter may also come from the table's
  `spec-decoding:` rules (per model x hardware).

Routing is by the group's fields (framework, model, precision, GPU, spec-decoding, parallel layout), never by
file or key names, so a speculative group without a drafter is an error, not a silent fallback to the plain
recipe (the seed's H100 launcher bug).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from infersweep.config.quirks import ModelQuirks
from infersweep.plan.models import ServeGroup
from infersweep.recipes import rules
from infersweep.recipes.common import CONTAINER_HF_CACHE, topology_components
from infersweep.recipes.errors import MissingQuirkError, RecipeError, UnsupportedFrameworkError
from infersweep.recipes.model import CONFIG_DIR, Mount, Recipe
from infersweep.recipes.ruledata import Facts, matches

#: vLLM's default is 600 s, too short to load a ~444 GB checkpoint from a shared filesystem.
ENGINE_READY_TIMEOUT_S = 3600

BASE_ENV: dict[str, str] = {
    # Download is a separate task; serving reads the finished cache without taking hub file locks.
    "HF_HUB_OFFLINE": "1",
    "VLLM_ENGINE_READY_TIMEOUT_S": str(ENGINE_READY_TIMEOUT_S),
    # A user site-packages on the host must not shadow the image's vLLM.
    "PYTHONNOUSERSITE": "1",
}


def _where(group: ServeGroup) -> str:
    return (f"serve group {group.id} ({group.config_key} isl={group.isl} osl={group.osl} tp={group.tp} "
            f"ep={group.ep}{' dp-attn' if group.dp_attn else ''} spec-decoding={group.spec_decoding})")


def _check_extra_flags(group: ServeGroup, extra: tuple[str, ...], generated: list[str]) -> None:
    """Quirk flags may add to the recipe but not repeat a generated flag: vLLM would silently keep the last."""
    ours = {tok for tok in generated if tok.startswith("--")}
    ours |= {"--speculative-config", "--stream-interval", "--gpu-memory-utilization"}
    clash = sorted({tok.split("=", 1)[0] for tok in extra if tok.startswith("--")} & ours)
    if clash:
        raise RecipeError(
            f"{_where(group)}: quirks extra-serve-flags repeat flags the recipe sets itself: {', '.join(clash)}; "
            "use the dedicated quirk fields (gmu / gmu-overrides, cudagraph-overrides, spec-decoding, "
            "stream-interval) or drop them"
        )


def _format_gmu(gmu: float) -> str:
    """0.9 -> "0.90" as the seed writes it; finer values keep their digits."""
    return f"{gmu:.2f}" if round(gmu, 2) == gmu else repr(gmu)


def _check_dcp(group: ServeGroup) -> None:
    """vLLM's rule (config/parallel.py): without PCP, DCP reuses the TP ranks and must divide TP; with PCP
    it spans the PCP axis or the whole TP x PCP block."""
    tp, dcp, pcp = rules.tensor_parallel_size(group), group.dcp_size, group.pcp_size
    if pcp == 1 and tp % dcp:
        raise RecipeError(
            f"{_where(group)}: dcp-size {dcp} must divide the tensor-parallel size {tp}"
            + (" (DEP runs TP 1 per rank, so it cannot use decode-context parallelism)" if group.dp_attn else "")
        )
    if pcp > 1 and dcp not in (1, pcp, tp * pcp):
        raise RecipeError(
            f"{_where(group)}: with pcp-size {pcp}, dcp-size must be 1, {pcp} (the PCP axis) or {tp * pcp} (TP x PCP)"
        )


def parallel_args(group: ServeGroup) -> list[str]:
    """The parallel-layout flags: DEP, TEP or TP, plus PP, decode- and prefill-context parallelism."""
    mode = rules.parallel_mode(group)
    if mode == "dep":
        args = ["--tensor-parallel-size", "1", "--data-parallel-size", str(group.tp), "--enable-expert-parallel"]
    elif mode == "tep":
        args = ["--tensor-parallel-size", str(group.tp), "--enable-expert-parallel"]
    else:
        args = ["--tensor-parallel-size", str(group.tp)]
    if group.pp > 1:
        args += ["--pipeline-parallel-size", str(group.pp)]
    if group.dcp_size > 1:
        _check_dcp(group)
        args += ["--decode-context-parallel-size", str(group.dcp_size)]
    if group.pcp_size > 1:
        # PCP adds GPUs: the server spans tp * pp * pcp of them (ServeGroup.gpus).
        args += ["--prefill-context-parallel-size", str(group.pcp_size)]
    return args


def speculative_config(group: ServeGroup, quirks: ModelQuirks | None, *, spaced: bool = False) -> str | None:
    """The `--speculative-config` JSON for a speculative group; None for spec-decoding none.

    Raises MissingQuirkError when the group asks for speculative decoding that no quirk describes.
    """
    if group.spec_decoding == "none":
        return None
    spec = quirks.spec_decoding.get(group.spec_decoding) if quirks else None
    if spec is None:
        known = sorted(quirks.spec_decoding) if quirks else []
        raise MissingQuirkError(
            f"{_where(group)} asks for spec-decoding {group.spec_decoding!r} but the quirks of model-prefix "
            f"{group.model_prefix!r} / {group.model} define "
            + (f"only {known}" if known else "no spec-decoding")
            + f"; add quirks.{group.model_prefix}.spec-decoding.{group.spec_decoding} with its draft-model "
            "(refusing to build a non-speculative recipe for a speculative config)"
        )
    payload: dict[str, object] = {
        "method": spec.method,
        "model": spec.draft_model,
        "num_speculative_tokens": spec.num_speculative_tokens,
    }
    if spec.attention_backend:
        payload["attention_backend"] = spec.attention_backend
    return json.dumps(payload) if spaced else json.dumps(payload, separators=(",", ":"))


def build_recipe(
    group: ServeGroup,
    quirks: ModelQuirks | None,
    *,
    port: int = 8888,
    hf_cache: str | None = None,
    served_model_name: str | None = None,
) -> Recipe:
    """The vLLM serve recipe for `group` (framework `vllm` only).

    `hf_cache` is the node's Hugging Face *hub* cache (the folder holding `models--org--name`, i.e. what
    HF_HUB_CACHE names, not HF_HOME); it is mounted at `/mnt/hf_hub_cache` and `HF_HUB_CACHE` points there. Raises UnsupportedFrameworkError for other
    frameworks or disaggregated groups, and MissingQuirkError for a speculative group without a
    spec-decoding quirk.
    """
    if group.framework != "vllm":
        raise UnsupportedFrameworkError(
            f"{_where(group)}: unsupported framework {group.framework!r}; only 'vllm' has a recipe builder"
        )
    if group.disagg:
        raise UnsupportedFrameworkError(
            f"{_where(group)}: disaggregated prefill/decode needs one server per pool; "
            "only single-server (aggregated) vLLM recipes are built"
        )
    if not 1 <= port <= 65535:
        raise RecipeError(f"{_where(group)}: port {port} is not a TCP port")
    profile = launch_profile(group)
    if profile is not None:
        return _profile_recipe(group, quirks, profile, port=port, hf_cache=hf_cache,
                               served_model_name=served_model_name)
    quirks, spaced_json = effective_quirks(group, quirks)
    spec_json = speculative_config(group, quirks, spaced=spaced_json)

    argv = ["vllm", "serve", group.model, "--port", str(port)]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    argv += parallel_args(group)
    argv += [
        "--gpu-memory-utilization", _format_gmu(rules.resolve_gmu(group, quirks)),
        "--max-model-len", str(rules.max_model_len(rules.with_quirk_context(group, quirks))),
    ]
    batching = [
        "--max-cudagraph-capture-size", str(rules.capture_size(group, quirks)),
        "--max-num-batched-tokens", str(rules.max_num_batched_tokens(group)),
    ]
    if quirks:
        _check_extra_flags(group, quirks.extra_serve_flags,
                           [*argv, *batching, "--no-enable-prefix-caching", "--enable-prefix-caching",
                            "--trust-remote-code"])
        argv += list(quirks.extra_serve_flags)
    argv += batching
    if spec_json is not None:
        argv += ["--speculative-config", spec_json]
    if quirks and quirks.stream_interval is not None:
        argv += ["--stream-interval", str(quirks.stream_interval)]
    # Random fixed-length prompts share no prefixes, so a prefix cache only adds bookkeeping; models such as
    # MiniMax ship their modeling code in the checkpoint repo.
    argv += ["--no-enable-prefix-caching", "--trust-remote-code"]

    env = dict(BASE_ENV)
    if quirks:
        env.update(quirks.env)
    draft = quirks.spec_decoding[group.spec_decoding].draft_model if spec_json is not None and quirks else None
    return _recipe(group, argv, env, {}, port=port, hf_cache=hf_cache, served_model_name=served_model_name,
                   draft=draft)


def _recipe(group: ServeGroup, argv: list[str], env: dict[str, str], files: dict[str, str], *, port: int,
            hf_cache: str | None, served_model_name: str | None, draft: str | None) -> Recipe:
    """The Recipe of a finished argv/env: HF cache mount, readiness timeout, recorded components."""
    mounts: tuple[Mount, ...] = ()
    if hf_cache:
        env = {**env, "HF_HUB_CACHE": CONTAINER_HF_CACHE}
        mounts = (Mount(source=hf_cache, target=CONTAINER_HF_CACHE),)
    try:
        ready_timeout = float(env["VLLM_ENGINE_READY_TIMEOUT_S"])
    except ValueError as exc:
        raise RecipeError(f"{_where(group)}: quirks env VLLM_ENGINE_READY_TIMEOUT_S is not a number") from exc

    # `vllm serve` has no flag for an external router or a KV transfer engine in a single-server topology;
    # they are recorded with the recipe, so results with and without them are never taken for each other.
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
        draft_model=draft,
        ready_timeout_s=ready_timeout,
        serve_group=group.id,
        components=components,
        files=files,
    )


# --------------------------------------------------------------------------------------------- rule table
TABLE = rules.TABLE
launch_facts = rules.launch_facts
launch_profile = rules.launch_profile


effective_quirks = rules.effective_quirks
_evaluate = rules.evaluate_value


def _value_tokens(flag: str, value: Any) -> list[str]:
    if value is None or value is False:
        return []
    if value is True:
        return [flag]
    if isinstance(value, str) and value.startswith("@"):
        return [flag, f"{CONFIG_DIR}/{value[1:]}"]
    return [flag, str(value)]


def _profile_args(group: ServeGroup, profile: dict[str, Any], facts: Facts) -> list[str]:
    out: list[str] = []
    for item in profile.get("args") or ():
        if not isinstance(item, dict):
            raise RecipeError(f"recipes/data/vllm.yaml profile {profile.get('name')!r}: arg {item!r} is not a mapping")
        flags = [k for k in item if k != "when"]
        if len(flags) != 1:
            raise RecipeError(f"recipes/data/vllm.yaml profile {profile.get('name')!r}: arg {item!r} needs one flag")
        if not matches(item.get("when"), facts):
            continue
        out += _value_tokens(flags[0], _evaluate(item[flags[0]], facts))
    return out


def _file_value(value: Any, facts: Facts) -> Any:
    if isinstance(value, dict):
        return {k: _file_value(v, facts) for k, v in value.items()}
    if isinstance(value, list):
        return [_file_value(v, facts) for v in value]
    return _evaluate(value, facts)


def _apply_extra_flags(argv: list[str], extra: tuple[str, ...]) -> list[str]:
    """Quirk flags on a profile's argv: a flag the argv has gets the quirk's value in place, others append."""
    out = list(argv)
    i = 0
    while i < len(extra):
        flag = extra[i]
        values: list[str] = []
        j = i + 1
        while j < len(extra) and not extra[j].startswith("--"):
            values.append(extra[j])
            j += 1
        name = flag.split("=", 1)[0]
        if name in out:
            k = out.index(name)
            end = k + 1
            while end < len(out) and not out[end].startswith("-"):
                end += 1
            out[k:end] = [flag, *values]
        else:
            out += [flag, *values]
        i = j
    return out


def _profile_recipe(group: ServeGroup, quirks: ModelQuirks | None, profile: dict[str, Any], *, port: int,
                    hf_cache: str | None, served_model_name: str | None) -> Recipe:
    """The launch of an InferenceX per-model script, from its table profile (plus the caller's quirk env/flags)."""
    facts = launch_facts(group)
    if group.dcp_size > 1 or group.pcp_size > 1 or group.pp > 1:
        raise RecipeError(f"{_where(group)}: the launch profile {profile.get('name')!r} has no pipeline or "
                          "context-parallel rule (InferenceX's script does not run this layout)")
    body = _profile_args(group, profile, facts)
    if group.spec_decoding != "none" and "--speculative-config" not in body:
        raise MissingQuirkError(
            f"{_where(group)} asks for spec-decoding {group.spec_decoding!r} but the launch profile "
            f"{profile.get('name')!r} of recipes/data/vllm.yaml gives no --speculative-config for it "
            "(refusing to build a non-speculative recipe for a speculative config)")
    argv = ["vllm", "serve", group.model, "--port", str(port)]
    if served_model_name:
        argv += ["--served-model-name", served_model_name]
    argv += body
    if quirks and quirks.extra_serve_flags:
        argv = _apply_extra_flags(argv, quirks.extra_serve_flags)
    files = {name: yaml.safe_dump(_file_value(content, facts), sort_keys=False)
             for name, content in (profile.get("files") or {}).items()}
    env = dict(BASE_ENV)
    for name, value in (profile.get("env") or {}).items():
        got = _evaluate(value, facts)
        if got is not None and got is not False:
            env[name] = str(got)
    if quirks:
        env.update(quirks.env)
    return _recipe(group, argv, env, files, port=port, hf_cache=hf_cache, served_model_name=served_model_name,
                   draft=None)
