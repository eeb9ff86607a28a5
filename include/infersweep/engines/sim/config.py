"""`infersweep sim serve` flags: the simulator's own, plus the vLLM serve flags our recipes generate.

vLLM flags that change what the simulator models are honoured (parallelism, limits, block size, KV dtype,
quantization, stream interval, served name, host/port, tokenizer); the rest are validated (type, JSON) and
otherwise ignored, so a recipe's `vllm serve MODEL …` argv runs unchanged on the sim. An unknown flag is an
error, as it is for vLLM.

SGLang, TensorRT-LLM and ATOM recipes are translated onto these flags (plus `--flavor`, which makes the server
behave like that engine) by the data table `flavors.yaml`; see `recipe_to_sim_argv`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from infersweep.engines.sim.kv_transfer import (
    DEFAULT_TRANSFER_ENGINE,
    LINK_GB_S,
    TRANSFER_ENGINES,
    check_kv_transfer,
)
from infersweep.engines.sim.noise import DEFAULT_TAU_S, MAX_SIGMA, NoiseModel
from infersweep.engines.sim.profiles import Precision, find_model_profile, precision_from_model_id
from infersweep.recipes.model import CONFIG_DIR, Recipe

DEFAULT_MODEL_PROFILE = "llama-3.1-8b"
DEFAULT_GPU_PROFILE = "h100"
#: Engines whose observable behaviour the sim reproduces (`--flavor`); the recipe frameworks it can run.
FLAVORS = ("vllm", "sglang", "trt", "atom")
Flavor = Literal["vllm", "sglang", "trt", "atom"]

# vLLM flags accepted and ignored: name -> value type (None = boolean switch, "json" = a JSON value).
_IGNORED_VLLM_FLAGS: dict[str, type | str | None] = {
    "--trust-remote-code": None, "--enforce-eager": None, "--language-model-only": None,
    "--enable-prefix-caching": None, "--no-enable-prefix-caching": None, "--disable-log-requests": None,
    "--disable-log-stats": None, "--async-scheduling": None, "--no-async-scheduling": None,
    "--enable-auto-tool-choice": None, "--disable-custom-all-reduce": None, "--disable-uvicorn-access-log": None,
    "--enable-log-requests": None, "--no-enable-log-requests": None, "--skip-tokenizer-init": None,
    "--enable-eplb": None, "--enable-dbo": None, "--enable-sleep-mode": None,
    "--max-cudagraph-capture-size": int, "--max-seq-len-to-capture": int, "--swap-space": float,
    "--cpu-offload-gb": float, "--data-parallel-size-local": int, "--data-parallel-rank": int,
    "--data-parallel-address": str, "--data-parallel-rpc-port": int, "--data-parallel-backend": str,
    "--dtype": str, "--attention-backend": str, "--distributed-executor-backend": str, "--load-format": str,
    "--download-dir": str, "--tokenizer-mode": str, "--revision": str, "--code-revision": str,
    "--tokenizer-revision": str, "--generation-config": str, "--chat-template": str,
    "--tool-call-parser": str, "--reasoning-parser": str, "--uvicorn-log-level": str, "--api-key": str,
    "--scheduling-policy": str, "--long-prefill-token-threshold": int, "--max-log-len": int,
    "--cuda-graph-sizes": str, "--num-gpu-blocks-override": int, "--kv-transfer-config": "json",
    "--speculative-config": "json", "--compilation-config": "json", "--hf-overrides": "json",
    "--override-generation-config": "json", "--limit-mm-per-prompt": "json", "--additional-config": "json",
    "--mm-processor-kwargs": "json", "--kv-events-config": "json", "--root-path": str,
    "--cp-kv-cache-interleave-size": int,
}


class SimConfig(BaseModel):
    """Validated settings of one simulated server."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flavor: Flavor = Field(default="vllm", description="whose health, metrics and /version the server mimics")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    model: str | None = Field(default=None, description="served model name (default: the profile's HF id)")
    model_profile: str = DEFAULT_MODEL_PROFILE
    gpu_profile: str = DEFAULT_GPU_PROFILE
    tp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    dp: int = Field(default=1, ge=1)
    pp: int = Field(default=1, ge=1)
    dcp: int = Field(default=1, ge=1)
    pcp: int = Field(default=1, ge=1)
    precision: Precision | None = None
    kv_cache_dtype: Literal["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"] = "auto"
    time_scale: float = Field(default=1.0, gt=0)
    max_num_seqs: int = Field(default=256, ge=1)
    max_num_batched_tokens: int = Field(default=8192, ge=1)
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    kv_free_gpu_memory_fraction: float | None = Field(
        default=None, gt=0, le=1,
        description="TensorRT-LLM's KV budget: this fraction of the memory left after weights and activations "
                    "(replaces gpu_memory_utilization when set)")
    max_model_len: int | None = Field(default=None, ge=2)
    block_size: int = Field(default=16, ge=1)
    enable_chunked_prefill: bool = True
    stream_interval: int = Field(default=1, ge=1)
    merge_late_steps: bool = True
    step_overhead_ms: float = Field(default=1.0, ge=0)
    tokenizer: str | None = None
    answer_key: str | None = None
    accuracy: float = Field(default=1.0, ge=0, le=1)
    answer_seed: int = 0
    seed: int = 0
    noise_run_sigma: float = Field(default=0.0, ge=0, le=MAX_SIGMA,
                                   description="relative σ of the slow run-to-run speed factor (0: off)")
    noise_step_sigma: float = Field(default=0.0, ge=0, le=MAX_SIGMA, description="relative σ of per-step jitter")
    noise_seed: int = Field(default=0, ge=0)
    noise_tau_s: float = Field(default=DEFAULT_TAU_S, gt=0, description="run factor's correlation time (sim s)")
    fail_at_start: Literal["kv-oom"] | None = None
    die_after_requests: int | None = Field(default=None, ge=1)
    startup_delay: float = Field(default=0.0, ge=0)
    fault_once: str | None = Field(
        default=None, description="marker file: the fault flags fire only while it is absent; firing creates it")
    ignored_flags: tuple[str, ...] = ()
    ignored_recipe_flags: tuple[str, ...] = Field(
        default=(), description="the recipe's own flags that have no effect in the simulator (non-vLLM flavors)")
    role: Literal["aggregated", "prefill", "decode"] = Field(
        default="aggregated", description="disaggregated serving: prefill-only or decode-only worker (see router.py)")
    kv_transfer: str = Field(default=DEFAULT_TRANSFER_ENGINE, description="KV transfer engine (kv_transfer.py)")
    kv_link: str | None = Field(default=None, description="KV link (kv_transfer.py; None: the GPU's usual one)")

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        if self.ep not in (1, self.tp * self.dp):
            raise ValueError(f"--ep must be 1 or tp*dp ({self.tp * self.dp}), got {self.ep}")
        if self.accuracy != 1.0 and not self.answer_key:
            raise ValueError("--accuracy needs --answer-key")
        check_kv_transfer(self.kv_transfer, self.kv_link)
        return self

    @property
    def noise(self) -> NoiseModel | None:
        """The step-time noise model, None when both sigmas are 0 (the default)."""
        model = NoiseModel(run_sigma=self.noise_run_sigma, step_sigma=self.noise_step_sigma, seed=self.noise_seed,
                           tau_s=self.noise_tau_s)
        return model if model.enabled else None

    @property
    def kv_dtype_bytes(self) -> float:
        return 1.0 if self.kv_cache_dtype.startswith("fp8") else 2.0


def _json(value: str) -> object:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc


_QUANT_PRECISION: dict[str, Precision] = {
    "fp8": "fp8", "mxfp8": "mxfp8", "modelopt": "fp8", "modelopt_fp4": "nvfp4", "nvfp4": "nvfp4",
    "mxfp4": "mxfp4", "quark": "fp8",
}


def build_parser() -> argparse.ArgumentParser:
    """The `infersweep sim serve` argument parser (simulator flags, then vLLM's)."""
    p = argparse.ArgumentParser(
        prog="infersweep sim serve",
        description="Serve an OpenAI-compatible simulated engine (roofline-timed continuous batching).",
        allow_abbrev=False,
    )
    p.add_argument("model_tag", nargs="?", help="vLLM-style positional model (HF id or path); picks the profile")
    g = p.add_argument_group("simulator")
    g.add_argument("--flavor", choices=FLAVORS, default="vllm",
                   help="mimic this engine's health, metrics and /version semantics (vllm)")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--port", type=int, default=8000)
    g.add_argument("--model", "--served-model-name", dest="model", nargs="+",
                   help="served model name (default: the model tag, else the profile's HF id)")
    g.add_argument("--model-profile", help="model profile name, HF id or alias (default: from the model tag, else "
                   f"{DEFAULT_MODEL_PROFILE})")
    g.add_argument("--gpu-profile", default=DEFAULT_GPU_PROFILE, help="GPU profile from the hardware table")
    g.add_argument("--tp", "--tensor-parallel-size", "-tp", dest="tp", type=int, default=1)
    g.add_argument("--dp", "--data-parallel-size", "-dp", dest="dp", type=int, default=1)
    g.add_argument("--ep", type=int, default=None, help="expert-parallel GPUs: 1 or tp*dp")
    g.add_argument("--enable-expert-parallel", "-ep", action="store_true", help="vLLM: EP over tp*dp GPUs")
    g.add_argument("--pipeline-parallel-size", "-pp", dest="pp", type=int, default=1)
    g.add_argument("--decode-context-parallel-size", "-dcp", dest="dcp", type=int, default=1)
    g.add_argument("--prefill-context-parallel-size", "-pcp", dest="pcp", type=int, default=1)
    g.add_argument("--precision", choices=["bf16", "fp16", "fp8", "mxfp8", "nvfp4", "mxfp4"])
    g.add_argument("--quantization", "-q")
    g.add_argument("--kv-cache-dtype", default="auto",
                   choices=["auto", "bfloat16", "fp8", "fp8_e4m3", "fp8_e5m2"])
    g.add_argument("--time-scale", type=float, default=1.0, help="run X times faster than real time")
    g.add_argument("--max-num-seqs", type=int, default=256)
    g.add_argument("--max-num-batched-tokens", type=int, default=8192)
    g.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    g.add_argument("--kv-free-gpu-memory-fraction", type=float,
                   help="TensorRT-LLM's KV budget: a fraction of the memory left after the weights")
    g.add_argument("--max-model-len", type=int)
    g.add_argument("--block-size", type=int, default=16)
    g.add_argument("--enable-chunked-prefill", dest="chunked", action="store_true", default=True)
    g.add_argument("--no-enable-chunked-prefill", dest="chunked", action="store_false")
    g.add_argument("--stream-interval", type=int, default=1, help="tokens per stream event (vLLM's flag)")
    g.add_argument("--no-merge-late-steps", dest="merge_late_steps", action="store_false",
                   help="when the sim falls behind, keep one event per step (stretching time) instead of "
                        "merging due steps' tokens into one event (vLLM's behaviour under a lagging frontend)")
    g.add_argument("--step-overhead-ms", type=float, default=1.0, help="fixed cost of every engine step")
    g.add_argument("--tokenizer", help="Hugging Face tokenizer directory (tokenizer.json); default: built-in")
    g.add_argument("--answer-key", help="jsonl of {question, answer} for GSM8K prompts")
    g.add_argument("--accuracy", type=float, default=1.0, help="fraction of key questions answered right")
    g.add_argument("--answer-seed", type=int, default=0)
    g.add_argument("--seed", type=int, default=0)
    n = p.add_argument_group("noise (run-to-run and per-step variation of step times; off by default)")
    n.add_argument("--noise-run-sigma", type=float, default=0.0,
                   help="relative σ of a slowly drifting speed factor (e.g. 0.03: runs differ by ~3%%)")
    n.add_argument("--noise-step-sigma", type=float, default=0.0, help="relative σ of i.i.d. per-step jitter")
    n.add_argument("--noise-seed", type=int, default=0, help="seed of the noise path")
    n.add_argument("--noise-tau-s", type=float, default=DEFAULT_TAU_S,
                   help="correlation time of the speed factor in simulated seconds")
    g.add_argument("--ignored-recipe-flags", dest="noop_recipe_flags", default="",
                   help="comma-separated recipe flags that have no effect here (listed in /version)")
    d = p.add_argument_group("disaggregated serving (workers behind `infersweep sim router`)")
    d.add_argument("--role", choices=["aggregated", "prefill", "decode"], default="aggregated",
                   help="prefill: compute prompts and send their KV; decode: generate from received KV")
    d.add_argument("--kv-transfer", choices=sorted(TRANSFER_ENGINES), default=DEFAULT_TRANSFER_ENGINE,
                   help="KV transfer engine a prefill worker sends with (its efficiency and latency)")
    d.add_argument("--kv-link", choices=sorted(LINK_GB_S),
                   help="link between the pools (default: the GPU profile's usual scale-out link)")
    f = p.add_argument_group("faults")
    f.add_argument("--fail-at-start", choices=["kv-oom"], help="exit at start-up with vLLM's KV OOM error")
    f.add_argument("--die-after-requests", type=int, help="exit abruptly after N requests")
    f.add_argument("--startup-delay", type=float, default=0.0, help="seconds before the server listens")
    f.add_argument("--fault-once", metavar="PATH",
                   help="fire --fail-at-start/--die-after-requests only if PATH is absent, creating it when the "
                        "fault fires (a transient crash: the restarted server runs clean)")
    v = p.add_argument_group("vLLM flags accepted and ignored")
    for flag, kind in _IGNORED_VLLM_FLAGS.items():
        dest = "ignored_" + flag.lstrip("-").replace("-", "_")
        if kind is None:
            v.add_argument(flag, dest=dest, action="store_true")
        else:
            v.add_argument(flag, dest=dest, type=_json if kind == "json" else kind)  # type: ignore[arg-type]
    return p


def parse_sim_argv(argv: Sequence[str]) -> SimConfig:
    """Parse `sim serve` arguments into a validated `SimConfig` (argparse exits with status 2 on errors)."""
    parser = build_parser()
    ns = parser.parse_args(list(argv))
    if ns.pcp == 1 and ns.tp % ns.dcp:
        parser.error(f"--decode-context-parallel-size {ns.dcp} must divide --tensor-parallel-size {ns.tp} "
                     "(vLLM: without prefill-context parallelism, DCP splits the TP ranks)")
    served = ns.model[0] if ns.model else ns.model_tag
    if ns.model_profile:
        profile = ns.model_profile
    else:
        found = find_model_profile(ns.model_tag) if ns.model_tag else None
        if ns.model_tag and found is None:
            parser.error(f"no model profile matches {ns.model_tag!r}; pass --model-profile NAME")
        profile = found.name if found else DEFAULT_MODEL_PROFILE
    precision = ns.precision
    if precision is None and ns.quantization:
        precision = _QUANT_PRECISION.get(ns.quantization.lower())
        if precision is None:
            parser.error(f"--quantization {ns.quantization!r} is not modelled; pass --precision")
    if precision is None and ns.model_tag:
        precision = precision_from_model_id(ns.model_tag)
    ep = ns.ep if ns.ep is not None else (ns.tp * ns.dp if ns.enable_expert_parallel else 1)
    ignored = tuple(sorted(k.removeprefix("ignored_") for k, val in vars(ns).items()
                           if k.startswith("ignored_") and val not in (None, False)))
    try:
        return SimConfig(
            flavor=ns.flavor, host=ns.host, port=ns.port, model=served, model_profile=profile, gpu_profile=ns.gpu_profile,
            tp=ns.tp, ep=ep, dp=ns.dp, pp=ns.pp, dcp=ns.dcp, pcp=ns.pcp, precision=precision, kv_cache_dtype=ns.kv_cache_dtype,
            time_scale=ns.time_scale, max_num_seqs=ns.max_num_seqs,
            max_num_batched_tokens=ns.max_num_batched_tokens, gpu_memory_utilization=ns.gpu_memory_utilization,
            kv_free_gpu_memory_fraction=ns.kv_free_gpu_memory_fraction, max_model_len=ns.max_model_len, block_size=ns.block_size, enable_chunked_prefill=ns.chunked,
            stream_interval=ns.stream_interval, merge_late_steps=ns.merge_late_steps, step_overhead_ms=ns.step_overhead_ms, tokenizer=ns.tokenizer,
            answer_key=ns.answer_key, accuracy=ns.accuracy, answer_seed=ns.answer_seed, seed=ns.seed,
            noise_run_sigma=ns.noise_run_sigma, noise_step_sigma=ns.noise_step_sigma, noise_seed=ns.noise_seed,
            noise_tau_s=ns.noise_tau_s,
            fail_at_start=ns.fail_at_start, die_after_requests=ns.die_after_requests,
            startup_delay=ns.startup_delay, fault_once=ns.fault_once, ignored_flags=ignored,
            ignored_recipe_flags=tuple(f for f in ns.noop_recipe_flags.split(",") if f),
            role=ns.role, kv_transfer=ns.kv_transfer, kv_link=ns.kv_link,
        )
    except ValueError as exc:  # pydantic ValidationError is a ValueError
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def _vllm_model_and_flags(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    args = list(argv)
    if len(args) >= 2 and args[0].endswith("vllm") and args[1] == "serve":
        rest = args[2:]
        if rest and not rest[0].startswith("-"):
            return rest[0], rest[1:]
        return None, rest
    if "vllm.entrypoints.openai.api_server" in args:
        rest = args[args.index("vllm.entrypoints.openai.api_server") + 1:]
        return None, rest
    raise ValueError(f"recipe argv is not a vLLM serve command: {' '.join(args[:3])} …")


def recipe_to_sim_argv(
    recipe: Recipe,
    *,
    model_profile: str | None = None,
    gpu_profile: str = DEFAULT_GPU_PROFILE,
    time_scale: float = 1.0,
    extra: Sequence[str] = (),
) -> list[str]:
    """The `infersweep sim serve …` arguments that simulate a recipe (starting with "sim", "serve").

    vLLM: the recipe's flags pass through (the sim validates them); the model, served name and port come
    from the recipe. SGLang, TensorRT-LLM and ATOM: the launcher's flags (and TensorRT-LLM's LLM-API YAML
    from `recipe.files`) are translated by `flavors.yaml` and `--flavor` is set. The profiles and time scale
    are added. Raises ValueError for an unknown framework or an argv that is not its launcher.
    """
    if recipe.framework == "vllm":
        return _vllm_sim_argv(recipe, model_profile=model_profile, gpu_profile=gpu_profile,
                              time_scale=time_scale, extra=extra)
    if recipe.framework not in FLAVORS:
        raise ValueError(f"unknown recipe framework {recipe.framework!r}: the simulator runs "
                         f"{', '.join(FLAVORS)} recipes")
    argv = ["sim", "serve", recipe.model, "--flavor", recipe.framework,
            *translate_recipe_flags(recipe)]
    if model_profile:
        argv += ["--model-profile", model_profile]
    argv += ["--gpu-profile", gpu_profile, "--time-scale", repr(float(time_scale)), *extra]
    return argv


def _vllm_sim_argv(recipe: Recipe, *, model_profile: str | None, gpu_profile: str, time_scale: float,
                   extra: Sequence[str]) -> list[str]:
    model, flags = _vllm_model_and_flags(recipe.argv)
    flags = [f for f in flags]
    for name in ("--model",):
        if name in flags:  # api_server form: --model X becomes the positional tag
            i = flags.index(name)
            model = flags[i + 1]
            del flags[i:i + 2]
    model = model or recipe.model
    argv = ["sim", "serve", model, *flags]
    if "--port" not in flags:
        argv += ["--port", str(recipe.port)]
    if recipe.served_model_name and "--served-model-name" not in flags:
        argv += ["--served-model-name", recipe.served_model_name]
    if model_profile:
        argv += ["--model-profile", model_profile]
    argv += ["--gpu-profile", gpu_profile, "--time-scale", repr(float(time_scale)), *extra]
    return argv


# --- SGLang / TensorRT-LLM / ATOM recipes ---------------------------------------------------------------

@cache
def flavor_table() -> dict[str, Any]:
    """`flavors.yaml`: per framework, launcher flag (and LLM-API YAML key) -> sim flag."""
    text = resources.files("infersweep.engines.sim").joinpath("flavors.yaml").read_text(encoding="utf-8")
    table = yaml.safe_load(text)
    if not isinstance(table, dict):
        raise ValueError("flavors.yaml must map framework -> table")
    return table


def _rule(entry: object) -> tuple[str, bool, dict[str, str]]:
    """(target, is_switch, value map) of a table entry."""
    if isinstance(entry, str):
        return entry, False, {}
    if isinstance(entry, dict):
        return str(entry["to"]), bool(entry.get("switch", False)), {str(k): str(v) for k, v in
                                                                     (entry.get("values") or {}).items()}
    raise ValueError(f"flavors.yaml: bad entry {entry!r}")


_LAUNCHERS: dict[str, str] = {
    "sglang": "python3 -m sglang.launch_server … or sglang serve …",
    "trt": "[mpirun …] trtllm-serve MODEL …",
    "atom": "python3 -m atom.entrypoints.openai_server …",
}


def _launcher_flags(framework: str, argv: Sequence[str]) -> list[str]:
    """The launcher's own arguments: what follows the module / command that starts the server."""
    args = list(argv)
    for i, arg in enumerate(args):
        if framework == "sglang":
            if arg == "sglang.launch_server":
                return args[i + 1:]
            if arg.rsplit("/", 1)[-1] == "sglang" and i + 1 < len(args) and args[i + 1] == "serve":
                return args[i + 2:]
        elif framework == "trt" and arg.rsplit("/", 1)[-1] == "trtllm-serve":
            rest = args[i + 1:]
            if rest[:1] == ["serve"]:
                rest = rest[1:]
            if rest and not rest[0].startswith("-"):
                rest = rest[1:]  # the positional model: the sim takes recipe.model
            return rest
        elif framework == "atom" and arg == "atom.entrypoints.openai_server":
            return args[i + 1:]
    raise ValueError(f"recipe argv is not a {framework} launch command ({_LAUNCHERS[framework]}): "
                     f"{' '.join(args[:4])} …")


def _config_file(recipe: Recipe, path: str) -> dict[str, Any]:
    """The LLM-API YAML a TensorRT-LLM argv names (`{CONFIG_DIR}/name`, or a bare name) from `recipe.files`."""
    name = path[len(CONFIG_DIR) + 1:] if path.startswith(CONFIG_DIR + "/") else path.rsplit("/", 1)[-1]
    if name not in recipe.files:
        raise ValueError(f"the recipe's argv names the config file {path!r} but recipe.files has no {name!r} "
                         f"(files: {', '.join(sorted(recipe.files)) or 'none'})")
    data = yaml.safe_load(recipe.files[name]) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {name!r} is not a YAML mapping")
    return data


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        out[f"{prefix}{key}"] = value
    return out


def _yaml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def translate_recipe_flags(recipe: Recipe) -> list[str]:
    """Sim flags for an SGLang / TensorRT-LLM / ATOM recipe (everything after the model tag and --flavor)."""
    framework = recipe.framework
    table = flavor_table()[framework]
    rules = {flag: _rule(entry) for flag, entry in (table.get("flags") or {}).items()}
    switches = set(table.get("switches") or ())
    sim: dict[str, str] = {flag: str(v) for flag, v in (table.get("defaults") or {}).items()}
    spec: dict[str, Any] = {}
    state = {"dp_attention": False, "ep_all": False}
    port: str | None = None
    ignored: list[str] = []
    yaml_paths: list[str] = []

    def apply(target: str, value: str | None, values: dict[str, str], source: str) -> None:
        nonlocal port
        if value is not None and values:
            value = values.get(value, value)
        if target in ("@dp_attention", "@ep_all"):
            state[target[1:]] = value is None or value.lower() == "true"
        elif target == "@model":
            pass  # the model comes from recipe.model
        elif target == "@port":
            port = value
        elif target == "@llm_api_yaml":
            assert value is not None
            yaml_paths.append(value)
        elif target.startswith("@spec."):
            key = target.removeprefix("@spec.")
            spec[key] = int(value) if value is not None and value.lstrip("-").isdigit() else value
        elif target.startswith("--"):
            if value is None:
                raise ValueError(f"{source} needs a value")
            sim[target] = value
        else:
            raise ValueError(f"flavors.yaml: unknown target {target!r} for {source}")

    args = _launcher_flags(framework, recipe.argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-"):
            continue  # a stray positional: no effect
        flag, eq, inline = arg.partition("=")
        rule = rules.get(flag)
        if rule is None:
            ignored.append(flag)
            if not eq and flag not in switches and i < len(args) and not args[i].startswith("-"):
                i += 1  # its value
            continue
        target, is_switch, values = rule
        if is_switch:
            apply(target, inline if eq else None, values, flag)
            continue
        if eq:
            value = inline
        elif i < len(args):
            value = args[i]
            i += 1
        else:
            raise ValueError(f"{flag} needs a value")
        apply(target, value, values, flag)
    if yaml_paths:  # trtllm-serve applies the LLM-API YAML over its CLI arguments
        yrules = {key: _rule(entry) for key, entry in (table.get("yaml") or {}).items()}
        for path in yaml_paths:
            for key, value in _flatten(_config_file(recipe, path)).items():
                if key in yrules:
                    target, _, values = yrules[key]
                    apply(target, _yaml_value(value), values, f"{path}: {key}")
                elif not isinstance(value, dict):
                    ignored.append(key)
    # Parallelism: the launcher's tp counts every GPU when attention is data-parallel (SGLang's
    # --enable-dp-attention, TRT's enable_attention_dp, ATOM's --enable-dp-attention): tp/dp-way TP × dp-way DP.
    tp, dp = int(sim.pop("--tp", "1")), int(sim.pop("--dp", "1"))
    if state["dp_attention"]:
        ranks = dp if dp > 1 else tp
        if tp % ranks:
            raise ValueError(f"{framework}: DP attention over {ranks} ranks must divide tensor parallelism {tp}")
        tp, dp = tp // ranks, ranks
    ep = tp * dp if state["ep_all"] else int(sim.pop("--ep", "1"))
    sim.pop("--ep", None)
    if ep not in (1, tp * dp):
        raise ValueError(f"{framework}: expert parallelism {ep} is not modelled by the simulator with "
                         f"{tp}-way TP × {dp}-way DP (it models EP over 1 or all {tp * dp} GPUs)")
    out = ["--tp", str(tp), "--dp", str(dp), "--ep", str(ep)]
    for flag, value in sim.items():
        out += [flag, value]
    if spec:
        out += ["--speculative-config", json.dumps(spec, sort_keys=True)]
    out += ["--port", port or str(recipe.port)]
    if recipe.served_model_name and "--served-model-name" not in sim:
        out += ["--served-model-name", recipe.served_model_name]
    if ignored:  # "=": the value starts with "--"
        out.append("--ignored-recipe-flags=" + ",".join(dict.fromkeys(ignored)))
    return out


def sim_command(sim_argv: Sequence[str], python: str | None = None) -> list[str]:
    """A full command line running `infersweep <sim_argv>` with this (or the given) Python."""
    return [python or sys.executable, "-m", "infersweep.cli", *sim_argv]
