"""Compare a recipe with the launch InferenceX's own script makes for the same serve topology (issue 17).

Equal means: the same launcher, the same flags with the same values (host, port and the model path aside;
`_`/`-` spelling normalised; flag order free), the same env the script exports (the node-plumbing variables in
`PLUMBING_ENV` aside), and the same generated files, compared as parsed YAML.
Used by tests/recipes/test_*_fidelity.py and perf/recipe_fidelity.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import yaml

#: Flags whose values differ per node/run by design.
PLACE_FLAGS = {"--host", "--port", "--server-port", "--model", "--model-path", "--served-model-name"}
#: Plumbing env, compared on neither side: where the cache is, start-up timeouts, user-site isolation. Our
#: recipes set them for every server; scripts set some of them for some.
PLUMBING_ENV = {"HF_HUB_OFFLINE", "PYTHONNOUSERSITE", "HF_HUB_CACHE", "HF_HOME", "VLLM_ENGINE_READY_TIMEOUT_S"}
#: Env InferenceX's workflow/launcher sets for every script (inputs, not the script's choices).
WORKFLOW_ENV = {"MODEL", "MODEL_PREFIX", "ISL", "OSL", "MAX_MODEL_LEN", "IMAGE", "FRAMEWORK", "PRECISION", "TP",
                "EP_SIZE", "DP_ATTENTION", "CONC", "SPEC_DECODING", "DISAGG", "RUN_EVAL", "EVAL_ONLY",
                "RANDOM_RANGE_RATIO", "RESULT_FILENAME", "HF_TOKEN", "EXP_NAME", "RESULT_DIR", "MODEL_PATH",
                "SCENARIO_TYPE", "SCENARIO_SUBDIR", "IS_AGENTIC", "OFFLOADING", "TOTAL_CPU_DRAM_GB", "DURATION",
                "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "RUNNER_NAME", "RUNNER_TYPE", "GITHUB_STEP_SUMMARY",
                "PORT", "SERVER_LOG", "PP", "DCP_SIZE", "PCP_SIZE", "GPU_METRICS_CSV"}


def normalise_flag(flag: str) -> str:
    """`--tp_size` and `--tp-size` are one flag (TRT-LLM and ATOM mix the spellings)."""
    return "--" + flag.lstrip("-").replace("_", "-") if flag.startswith("-") else flag


def parse_argv(argv: Sequence[str]) -> tuple[tuple[str, ...], dict[str, list[str | None]]]:
    """(positional head, {flag: [values]}) — a flag without a value maps to [None]; repeated flags keep all."""
    head: list[str] = []
    flags: dict[str, list[str | None]] = {}
    i = 0
    while i < len(argv) and not argv[i].startswith("-"):
        head.append(argv[i])
        i += 1
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("-") and not _is_number(tok):
            name, eq, val = tok.partition("=")
            key = normalise_flag(name)
            if eq:
                flags.setdefault(key, []).append(val)
                i += 1
                continue
            values: list[str] = []
            j = i + 1
            while j < len(argv) and (not argv[j].startswith("-") or _is_number(argv[j])):
                values.append(argv[j])
                j += 1
            flags.setdefault(key, []).append(" ".join(values) if values else None)
            i = j
        else:  # a stray positional after flags (e.g. trtllm-serve MODEL after mpirun options)
            head.append(tok)
            i += 1
    return tuple(head), flags


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def launcher_of(argv: Sequence[str]) -> str:
    """The program part of a server command: `python3 -m sglang.launch_server`, `sglang serve`, `trtllm-serve`…"""
    if len(argv) >= 3 and argv[1] == "-m":
        return f"{argv[0]} -m {argv[2]}"
    if "trtllm-serve" in argv:
        return "trtllm-serve"
    return " ".join(argv[:2])


def _server_part(argv: Sequence[str]) -> list[str]:
    """Drop an `mpirun … ` prefix: TRT-LLM's recipes and scripts both wrap trtllm-serve in it."""
    argv = list(argv)
    return argv[argv.index("trtllm-serve"):] if "trtllm-serve" in argv else argv


#: The client choices compared (`--trust-remote-code` only lets InferenceX's client run a tokenizer's code).
CLIENT_KEYS = ("backend", "use-chat-template", "dsv4")


def diff_launch(ix: dict[str, Any], ours: dict[str, Any], *, model_paths: Iterable[str] = ()) -> list[str]:
    """Differences between InferenceX's launch (`ix`: argv, env, files) and our recipe record (argv, env,
    files); empty when they are the same launch."""
    out: list[str] = []
    ix_argv, our_argv = _server_part(ix["argv"]), _server_part(ours["argv"])
    if launcher_of(ix_argv) != launcher_of(our_argv):
        out.append(f"launcher: {launcher_of(ix_argv)!r} vs ours {launcher_of(our_argv)!r}")
    _, ix_flags = parse_argv(ix_argv)
    _, our_flags = parse_argv(our_argv)
    skip = PLACE_FLAGS
    for flag in sorted(set(ix_flags) | set(our_flags)):
        if flag in skip:
            continue
        a, b = ix_flags.get(flag), our_flags.get(flag)
        if _names_files(a, ix.get("files")) and _names_files(b, ours.get("files")):
            continue  # generated-file paths differ by design; their contents are compared below
        if a != b:
            out.append(f"flag {flag}: {a if a is not None else 'absent'} vs ours {b if b is not None else 'absent'}")
    ix_env = {k: v for k, v in (ix.get("env") or {}).items() if k not in WORKFLOW_ENV | PLUMBING_ENV}
    our_env = {k: v for k, v in (ours.get("env") or {}).items() if k not in PLUMBING_ENV}
    for key in sorted(set(ix_env) | set(our_env)):
        if ix_env.get(key) != our_env.get(key):
            out.append(f"env {key}: {ix_env.get(key)!r} vs ours {our_env.get(key)!r}")
    ix_files = {name.rsplit("/", 1)[-1]: text for name, text in (ix.get("files") or {}).items()}
    our_files = dict(ours.get("files") or {})
    if len(ix_files) != len(our_files):
        out.append(f"files: {sorted(ix_files)} vs ours {sorted(our_files)}")
    for (name, a_text), (_, b_text) in zip(sorted(ix_files.items()), sorted(our_files.items()), strict=False):
        a, b = _parsed(a_text), _parsed(b_text)
        if a != b:
            out.append(f"file {name} content differs: {a!r} vs ours {b!r}")
    # The client the script runs (ix_oracle records run_benchmark_serving's flags): endpoint and chat template.
    if ix.get("client") is not None and ours.get("client") is not None:
        for key in CLIENT_KEYS:
            if ix["client"].get(key) != ours["client"].get(key):
                out.append(f"client {key}: {ix['client'].get(key)!r} vs ours {ours['client'].get(key)!r}")
    return out


def _parsed(text: str) -> Any:
    """YAML/JSON files compare as data; anything else (a Jinja chat template) as text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _names_files(values: list[str | None] | None, files: dict[str, str] | None) -> bool:
    """Every value is the path of a generated file (by base name), or a config file by its suffix."""
    names = {n.rsplit("/", 1)[-1] for n in (files or {})}
    return bool(values) and all(
        v is not None and (v.rsplit("/", 1)[-1] in names or v.endswith((".yml", ".yaml", ".json")))
        for v in values or [])
