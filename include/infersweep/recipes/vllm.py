"""Build the vLLM serve recipe of a serve group: image, argv, env, GPUs, mounts, port — as data.

The argv reproduces the seed recipe (InferenceX `minimaxm3_fp8_{h200,h100}[_mtp].sh`) flag for flag and
in its order, generalised to any vLLM group; everything model- or hardware-specific comes from
`ModelQuirks`. Routing is by the group's fields (framework, spec-decoding, parallel layout), never by
file or key names, so a speculative group without a draft model is an error, not a silent fallback to
the plain recipe (the seed's H100 launcher bug).
"""

from __future__ import annotations

import json

from infersweep.config.quirks import ModelQuirks
from infersweep.plan.models import ServeGroup
from infersweep.recipes import rules
from infersweep.recipes.errors import MissingQuirkError, RecipeError, UnsupportedFrameworkError
from infersweep.recipes.model import Mount, Recipe

#: Where a node's Hugging Face hub cache is mounted inside the container (the seed's HF_HUB_CACHE).
CONTAINER_HF_CACHE = "/mnt/hf_hub_cache"
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


def speculative_config(group: ServeGroup, quirks: ModelQuirks | None) -> str | None:
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
    return json.dumps(payload, separators=(",", ":"))


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
    spec_json = speculative_config(group, quirks)

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
    mounts: tuple[Mount, ...] = ()
    if hf_cache:
        env["HF_HUB_CACHE"] = CONTAINER_HF_CACHE
        mounts = (Mount(source=hf_cache, target=CONTAINER_HF_CACHE),)
    if quirks:
        env.update(quirks.env)
    try:
        ready_timeout = float(env["VLLM_ENGINE_READY_TIMEOUT_S"])
    except ValueError as exc:
        raise RecipeError(f"{_where(group)}: quirks env VLLM_ENGINE_READY_TIMEOUT_S is not a number") from exc

    draft = quirks.spec_decoding[group.spec_decoding].draft_model if spec_json is not None and quirks else None
    # `vllm serve` has no flag for an external router or a KV transfer engine in a single-server topology;
    # they are recorded with the recipe, so results with and without them are never taken for each other.
    components: dict[str, object] = {}
    if group.router is not None:
        components["router"] = group.router.model_dump(mode="json")
    if group.kv_p2p_transfer is not None:
        components["kv-p2p-transfer"] = group.kv_p2p_transfer
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
    )
