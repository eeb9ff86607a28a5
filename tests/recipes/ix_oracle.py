"""Test oracle: what InferenceX's own scripts launch for every single-node fixed-seq-len serve topology.

For each serve group of the shared fixture (config key x isl/osl x tp/ep/dp-attn/pp/dcp/pcp/spec-decoding),
the script InferenceX's runner launcher would pick (`select_script`) is run ONCE at the group's highest
concurrency (the server infersweep starts), with the env `.github/workflows/benchmark-tmpl.yml` gives it, a
stub `benchmark_lib.sh` and command shims on PATH. The server-launch shims (`python3 -m sglang.launch_server`,
`sglang serve`, `vllm serve`, `mpirun ... trtllm-serve`, `python3 -m atom.entrypoints.openai_server`, ...)
record argv, the full environment and the text of every file the argv names, then exit 0.

The stub library is the real `benchmark_lib.sh` with the functions that talk to GPUs, servers and clients
redefined as no-ops appended after it, so everything that computes flags or env (its top-level exports,
`check_env_vars`, `setup_eval_context`, `compute_eval_context_length`) stays the real code. The scripts and
the library write to `/workspace/...`; each run gets its own temp dir and `/workspace` is rewritten to it in
the copies, then mapped back to `/workspace` in the record.

Sources are read from `../shared/reference/inferencex-1ef98e3ed/` and never imported by the product.

    python -m tests.recipes.ix_oracle --out /tmp/ix-launches.jsonl [--framework sglang] [--min-conc-check]

One JSON record per serve group: the group (config-key, runner, framework, model, model-prefix, precision,
image, isl, osl, tp, ep, dp-attn, pp, dcp-size, pcp-size, spec-decoding, max-model-len, concs, conc = the one
launched), then `runner-launcher`, `script` (relative to the InferenceX repo), `launcher` ("python3 -m
sglang.launch_server", "sglang serve", "vllm serve", "mpirun trtllm-serve", "python3 -m
atom.entrypoints.openai_server"), `argv` (the server command line; after mpirun's options, which are in
`wrapper`), `env` (what the script exported or changed relative to the workflow env, less bookkeeping),
`files` ({name as in argv: text}), `error` (null or why), `rc`, `calls` (every shimmed command, in order),
`pre-launch` (non-download commands run before the server, e.g. `pip install -U transformers`). Optional:
`intended-script` + `intended` (the same capture for the script the key names when the launcher picks
another), `alternatives` (when the runner type's launchers disagree), `at-min-conc` (`--min-conc-check`).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from infersweep.config.sweep import load_sweep
from infersweep.plan.groups import group_jobs
from infersweep.plan.models import ServeGroup
from infersweep.plan.planner import PlanFilters, expand

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
FIXTURE_DIR = SHARED / "fixtures" / "inferencex"
REFERENCE_DIR = SHARED / "reference" / "inferencex-1ef98e3ed"
SCENARIO_SUBDIR = "fixed_seq_len/"
WORKSPACE = "/workspace"
TIMEOUT_S = 20.0
#: Shim processes still running after the script ended (servers backgrounded with `&`) get this long.
SHIM_GRACE_S = 5.0

#: Env keys that are bookkeeping, not the script's choices: bash's own, and benchmark_lib.sh's GPU-monitor
#: output path (exported by the library for every script; no server reads it).
BOOKKEEPING_ENV = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "GPU_METRICS_CSV"})
SHIM_ENV_PREFIX = "IX_ORACLE_"

#: Commands shimmed on PATH. Server launchers record; the rest are no-ops (exit 0, no output).
SHIM_NAMES = (
    "python3", "python", "sglang", "vllm", "trtllm-serve", "mpirun", "hf", "huggingface-cli", "nvidia-smi",
    "amd-smi", "rocm-smi", "curl", "wget", "sleep", "pip", "pip3", "uv", "git", "srun", "salloc", "scancel",
    "squeue", "docker", "enroot", "lm_eval", "numactl", "ibstat", "ibv_devinfo", "sudo",
)


class OracleUnavailable(RuntimeError):
    """The shared reference material (../shared) is absent."""


def require_shared(fixture_dir: Path = FIXTURE_DIR, reference_dir: Path = REFERENCE_DIR) -> None:
    missing = [str(p) for p in (fixture_dir / "nvidia-master.yaml", reference_dir / "benchmarks" / "benchmark_lib.sh")
               if not p.exists()]
    if missing:
        raise OracleUnavailable(f"InferenceX reference material absent ({', '.join(missing)}); "
                                "the oracle needs ../shared beside the project")


# ---------------------------------------------------------------------------------------------------------
# Script selection: runners/launch_*.sh, per launcher family
# ---------------------------------------------------------------------------------------------------------

#: launcher (runner name before `_`) -> (gpu in the script name, selection rule). Rules:
#:   fw-first:   `{base}_{fw}{_mtp}.sh`, else `{base}{_trt if trt}{_mtp}.sh` (b200-*, b300-nv, h200-dgxc-slurm)
#:   fw-first-atom: as fw-first with `_atom` as the legacy suffix (mi355x-amds)
#:   legacy-trt: `{base}{_trt if trt}{_mtp}.sh` only (h200-cw, h200-nb)
#:   bare:       `{base}.sh`, no framework or mtp suffix at all (h100-*, mi300x-amds, mi325x-amds)
LAUNCHERS: dict[str, tuple[str, str]] = {
    "b200-cw": ("b200", "fw-first"),
    "b200-nb": ("b200", "fw-first"),
    "b200-dgxc": ("b200", "fw-first"),
    "b200-dgxc-slurm": ("b200", "fw-first"),  # a symlink to launch_b200-dgxc.sh
    "b300-nv": ("b300", "fw-first"),
    "h200-dgxc-slurm": ("h200", "fw-first"),
    "h200-cw": ("h200", "legacy-trt"),
    "h200-nb": ("h200", "legacy-trt"),
    "h100-cw": ("h100", "bare"),
    "h100-cr": ("h100", "bare"),
    "h100-dgxc-slurm": ("h100", "bare"),
    "mi300x-amds": ("mi300x", "bare"),
    "mi325x-amds": ("mi325x", "bare"),
    "mi355x-amds": ("mi355x", "fw-first-atom"),
}


def _runners(fixture_dir: Path) -> dict[str, list[str]]:
    path = fixture_dir / "runners.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def runner_names(runner_type: str, fixture_dir: Path = FIXTURE_DIR) -> list[str]:
    """Runner names of a runner type (runners.yaml); a type it does not list (b200-dsv4) borrows its GPU's."""
    table = _runners(fixture_dir)
    if runner_type in table:
        return [str(n) for n in table[runner_type]]
    gpu = runner_type.split("-")[0]
    return [str(n) for n in table.get(gpu, [])]


def launchers_for(runner_type: str, fixture_dir: Path = FIXTURE_DIR) -> list[str]:
    """The distinct launch scripts (`launch_{RUNNER_NAME%%_*}.sh`) of a runner type, in runners.yaml order."""
    seen: dict[str, None] = {}
    for name in runner_names(runner_type, fixture_dir):
        seen.setdefault(name.split("_")[0], None)
    return list(seen)


def script_candidates(group: ServeGroup, launcher: str) -> list[str]:
    """The script paths (relative to the repo root) a launcher tries, in order; the last one is run anyway."""
    gpu, rule = LAUNCHERS[launcher]
    base = f"benchmarks/single_node/{SCENARIO_SUBDIR}{group.exp_name.split('_')[0]}_{group.precision}_{gpu}"
    mtp = "_mtp" if group.spec_decoding == "mtp" else ""
    if rule == "bare":
        return [f"{base}.sh"]
    if rule == "legacy-trt":
        return [f"{base}{'_trt' if group.framework == 'trt' else ''}{mtp}.sh"]
    legacy = {"fw-first": "trt", "fw-first-atom": "atom"}[rule]
    return [f"{base}_{group.framework}{mtp}.sh", f"{base}{'_' + legacy if group.framework == legacy else ''}{mtp}.sh"]


def select_for_launcher(group: ServeGroup, launcher: str, reference_dir: Path = REFERENCE_DIR) -> str | None:
    """The script (relative path) a launcher runs for the group, or None when it does not exist."""
    candidates = script_candidates(group, launcher)
    for rel in candidates[:-1]:
        if (reference_dir / rel).is_file():
            return rel
    return candidates[-1] if (reference_dir / candidates[-1]).is_file() else None


def primary_launcher(runner_type: str, fixture_dir: Path = FIXTURE_DIR) -> str | None:
    """The launcher of the runner type's first runner in runners.yaml (the one this oracle emulates)."""
    known = [name for name in launchers_for(runner_type, fixture_dir) if name in LAUNCHERS]
    return known[0] if known else None


def select_script(group: ServeGroup, *, reference_dir: Path = REFERENCE_DIR,
                  fixture_dir: Path = FIXTURE_DIR) -> Path | None:
    """The script InferenceX runs for the group (primary launcher of its runner type), or None."""
    launcher = primary_launcher(group.runner, fixture_dir)
    if launcher is None:
        return None
    rel = select_for_launcher(group, launcher, reference_dir)
    return reference_dir / rel if rel else None


# ---------------------------------------------------------------------------------------------------------
# Stub library and shims
# ---------------------------------------------------------------------------------------------------------

#: Appended after the real benchmark_lib.sh: the functions that touch GPUs, servers and clients.
_STUB_OVERRIDES = r"""
# ---- ix_oracle stubs: no GPUs, no server, no client --------------------------------------------------
start_gpu_monitor() { :; }
stop_gpu_monitor() { :; }
wait_for_server_ready() { set +x; :; }
# The client's flags (backend, chat template...) are part of what a job measures: keep them, NUL-separated.
run_benchmark_serving() { printf '%s\0' "$@" > "$IX_ORACLE_RECORD_DIR/client.args"; }
move_profile_trace_for_relay() { :; }
_install_lm_eval_deps() { :; }
_patch_lm_eval() { :; }
run_lm_eval() { :; }
append_lm_eval_summary() { :; }
run_eval() { :; }
agentic_pip_install() { :; }
ensure_hf_cli() { :; }
install_agentic_deps() { :; }
run_agentic_replay_and_write_outputs() { :; }
"""

_SHIM = r'''#!{python} -IS
"""ix_oracle command shim: server launchers record argv/env/named files; everything else is a no-op."""
import json, os, sys

SERVER_MODULES = ("sglang.launch_server", "atom.entrypoints", "vllm.entrypoints", "sglang_router",
                  "tensorrt_llm", "sglang.srt")
RECORD_DIR = os.environ.get("IX_ORACLE_RECORD_DIR", "")


def classify(argv):
    """(launcher, server argv, wrapper argv) when argv starts a server, else None."""
    if not argv:
        return None
    name = os.path.basename(argv[0])
    args = argv[1:]
    if name.startswith("python"):
        if "-m" in args:
            i = args.index("-m")
            if i + 1 < len(args) and args[i + 1].startswith(SERVER_MODULES):
                return "python3 -m " + args[i + 1], ["python3"] + args, []
        return None
    if name in ("sglang", "vllm") and args[:1] == ["serve"]:
        return name + " serve", [name] + args, []
    if name == "trtllm-serve":
        return "trtllm-serve", [name] + args, []
    if name in ("mpirun", "srun", "numactl", "env", "taskset"):
        for i, tok in enumerate(args):
            inner = classify(args[i:]) if not tok.startswith("-") else None
            if inner:
                return name + " " + inner[0], inner[1], [name] + args[:i] + inner[2]
    return None


def files_named(args, cwd):
    out = {}
    for tok in args:
        values = [tok]
        if tok.startswith("-") and "=" in tok:
            values.append(tok.split("=", 1)[1])
        for value in values:
            if not value or value.startswith("-") or len(value) > 4096:
                continue
            path = value if os.path.isabs(value) else os.path.join(cwd, value)
            try:
                if os.path.isfile(path) and os.path.getsize(path) < 2_000_000:
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        out[value] = fh.read()
            except OSError:
                pass
    return out


def main():
    argv = [os.path.basename(sys.argv[0])] + sys.argv[1:]
    if RECORD_DIR:
        # The fork time (clock ticks since boot) and pid order calls as the script issued them: a server
        # backgrounded with `&` may start up after the script's next command has already logged itself.
        try:
            with open("/proc/self/stat") as fh:
                start = int(fh.read().rsplit(")", 1)[1].split()[19])
        except (OSError, ValueError, IndexError):
            start = 0
        with open(os.path.join(RECORD_DIR, "calls.jsonl"), "a") as fh:
            fh.write(json.dumps({"start": start, "pid": os.getpid(), "argv": argv}) + "\n")
    hit = classify(argv)
    if hit and RECORD_DIR:
        launcher, server, wrapper = hit
        cwd = os.getcwd()
        rec = {"launcher": launcher, "argv": server, "wrapper": wrapper, "env": dict(os.environ), "cwd": cwd,
               "files": files_named(server[1:], cwd), "time": __import__("time").time()}
        tmp = os.path.join(RECORD_DIR, "launch-%d.tmp" % os.getpid())
        with open(tmp, "w") as fh:
            json.dump(rec, fh)
        os.replace(tmp, os.path.join(RECORD_DIR, "launch-%d-%d.json" % (int(rec["time"] * 1e6), os.getpid())))
        return 0
    if argv[0].startswith("python") and "-c" in argv and any("AutoConfig" in a for a in argv):
        print(0)  # get_native_max_context_length: no model config on this box
    return 0


sys.exit(main())
'''


def _write_shims(shim_dir: Path) -> None:
    shim_dir.mkdir(parents=True, exist_ok=True)
    main = shim_dir / "_ix_shim.py"
    main.write_text(_SHIM.replace("{python}", sys.executable))
    main.chmod(0o755)
    for name in SHIM_NAMES:
        link = shim_dir / name
        if not link.exists():
            link.symlink_to(main.name)


_SHIM_CACHE: dict[str, Path] = {}
_SHIM_LOCK = threading.Lock()


def shim_dir() -> Path:
    """One shim folder per process (shared by every capture, removed at exit)."""
    with _SHIM_LOCK:
        if "dir" not in _SHIM_CACHE:
            path = Path(tempfile.mkdtemp(prefix="ix-oracle-shims-"))
            atexit.register(shutil.rmtree, path, True)
            _write_shims(path)
            _SHIM_CACHE["dir"] = path
        return _SHIM_CACHE["dir"]


# ---------------------------------------------------------------------------------------------------------
# Capture
# ---------------------------------------------------------------------------------------------------------


def workflow_env(group: ServeGroup, conc: int, runner_name: str) -> dict[str, str]:
    """The env benchmark-tmpl.yml (and the launcher's PORT) gives a fixed-seq-len script."""
    return {
        "RANDOM_RANGE_RATIO": "0.8",
        "HF_TOKEN": "hf_placeholder",
        "HF_HUB_CACHE": "/mnt/hf_hub_cache/",
        "EXP_NAME": group.exp_name,
        "MODEL": group.model,
        "MODEL_PREFIX": group.model_prefix,
        "ISL": str(group.isl),
        "OSL": str(group.osl),
        "MAX_MODEL_LEN": str(group.max_model_len),
        "IMAGE": group.image,
        "FRAMEWORK": group.framework,
        "PRECISION": group.precision,
        "TP": str(group.tp),
        "EP_SIZE": str(group.ep),
        "DP_ATTENTION": "true" if group.dp_attn else "false",
        "CONC": str(conc),
        "SPEC_DECODING": group.spec_decoding,
        "DISAGG": "true" if group.disagg else "false",
        "RUN_EVAL": "true" if conc in group.eval_concs else "false",
        "EVAL_ONLY": "false",
        "SCENARIO_TYPE": "fixed-seq-len",
        "SCENARIO_SUBDIR": SCENARIO_SUBDIR,
        "IS_AGENTIC": "0",
        "OFFLOADING": "none",
        "TOTAL_CPU_DRAM_GB": "600",
        "DURATION": "1800",
        "RESULT_DIR": "/workspace/results",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": "/tmp/inferencex-pycache",
        "RUNNER_NAME": runner_name,
        "RUNNER_TYPE": group.runner,
        "RESULT_FILENAME": f"ix_oracle_{group.id}",
        "GITHUB_STEP_SUMMARY": "",
        "PORT": "8888",
    }


def _unmap(value: Any, work: str) -> Any:
    """Map the temp work dir back to /workspace in strings, lists and dicts (keys too)."""
    if isinstance(value, str):
        return value.replace(work, WORKSPACE)
    if isinstance(value, list):
        return [_unmap(v, work) for v in value]
    if isinstance(value, dict):
        return {_unmap(k, work): _unmap(v, work) for k, v in value.items()}
    return value


def _identity(group: ServeGroup, conc: int) -> dict[str, Any]:
    return {
        "group-id": group.id, "config-key": group.config_key, "runner": group.runner, "framework": group.framework,
        "model": group.model, "model-prefix": group.model_prefix, "precision": group.precision,
        "image": group.image, "isl": group.isl, "osl": group.osl, "tp": group.tp, "ep": group.ep,
        "dp-attn": group.dp_attn, "pp": group.pp, "dcp-size": group.dcp_size, "pcp-size": group.pcp_size,
        "spec-decoding": group.spec_decoding, "max-model-len": group.max_model_len, "concs": list(group.concs),
        "conc": conc,
    }


def intended_script(group: ServeGroup, *, reference_dir: Path = REFERENCE_DIR,
                    fixture_dir: Path = FIXTURE_DIR) -> str | None:
    """The script the group's name asks for, whatever the launcher does: `{base}_{fw}{_mtp}.sh`, else
    `{base}{_trt|_atom}{_mtp}.sh` for trt/atom or `{base}{_mtp}.sh`, looked up in fixed_seq_len/ and then
    in single_node/ itself (where a few scripts sit that no launcher finds)."""
    launcher = primary_launcher(group.runner, fixture_dir)
    if launcher is None:
        return None
    gpu = LAUNCHERS[launcher][0]
    stem = f"{group.exp_name.split('_')[0]}_{group.precision}_{gpu}"
    mtp = "_mtp" if group.spec_decoding == "mtp" else ""
    legacy = f"_{group.framework}" if group.framework in ("trt", "atom") else ""
    for folder in (f"benchmarks/single_node/{SCENARIO_SUBDIR}", "benchmarks/single_node/"):
        for name in (f"{stem}_{group.framework}{mtp}.sh", f"{stem}{legacy}{mtp}.sh"):
            if (reference_dir / folder / name).is_file():
                return folder + name
    return None


def capture(group: ServeGroup, *, reference_dir: Path = REFERENCE_DIR, fixture_dir: Path = FIXTURE_DIR,
            timeout: float = TIMEOUT_S, conc: int | None = None) -> dict[str, Any]:
    """Run the group's script once at its highest concurrency (or `conc`); return the launch record.

    When the script the launcher picks is not the one the group's name asks for (`intended_script`: the
    h100/mi300x/mi325x launchers never add `_mtp`; the DeepSeek-V4 MI355X MTP scripts sit outside
    fixed_seq_len/), that one is captured too, under `intended`.
    """
    conc = group.max_conc if conc is None else conc
    record = _identity(group, conc)
    launcher = primary_launcher(group.runner, fixture_dir)
    record.update({"runner-launcher": f"runners/launch_{launcher}.sh" if launcher else None, "script": None,
                   "launcher": None, "argv": None, "wrapper": None, "env": {}, "files": {}, "error": None})
    if launcher is None:
        record["error"] = f"no known launcher for runner type {group.runner!r}"
        return record
    alternatives = {name: select_for_launcher(group, name, reference_dir)
                    for name in launchers_for(group.runner, fixture_dir) if name in LAUNCHERS}
    if len(set(alternatives.values())) > 1:
        record["alternatives"] = alternatives
    names = runner_names(group.runner, fixture_dir)
    runner_name = next((n for n in names if n.split("_")[0] == launcher), names[0] if names else group.runner)
    rel = alternatives[launcher]
    if rel is None:
        record["error"] = f"script not found: the launcher tries {', '.join(script_candidates(group, launcher))}"
    else:
        record["script"] = rel
        record.update(_execute(group, conc, rel, reference_dir, runner_name, timeout))
    intended = intended_script(group, reference_dir=reference_dir, fixture_dir=fixture_dir)
    if intended is not None and intended != rel:
        record["intended-script"] = intended
        record["intended"] = _execute(group, conc, intended, reference_dir, runner_name, timeout)
    return record


def _execute(group: ServeGroup, conc: int, rel: str, reference_dir: Path, runner_name: str,
             timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ix-oracle-") as tmp:
        return _run(group, conc, rel, reference_dir, Path(tmp), runner_name, timeout)


def _run(group: ServeGroup, conc: int, rel: str, reference_dir: Path, tmp: Path, runner_name: str,
         timeout: float) -> dict[str, Any]:
    """Run one script in a fresh work dir (standing in for /workspace); the launch it records, mapped back."""
    work = tmp / "ws"
    rec_dir = tmp / "rec"
    rec_dir.mkdir()
    bench = work / "benchmarks"
    (bench / "single_node" / "fixed_seq_len").mkdir(parents=True)
    templates = reference_dir / "benchmarks" / "single_node" / "chat_templates"
    if templates.is_dir():
        shutil.copytree(templates, bench / "single_node" / "chat_templates")
    lib = (reference_dir / "benchmarks" / "benchmark_lib.sh").read_text()
    (bench / "benchmark_lib.sh").write_text(lib.replace(WORKSPACE, str(work)) + _STUB_OVERRIDES)
    (work / rel).write_text((reference_dir / rel).read_text().replace(WORKSPACE, str(work)))
    given = workflow_env(group, conc, runner_name)
    given["RESULT_DIR"] = given["RESULT_DIR"].replace(WORKSPACE, str(work))
    env = {"PATH": f"{shim_dir()}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp), "LANG": "C.UTF-8",
           "TMPDIR": str(tmp), **given, f"{SHIM_ENV_PREFIX}RECORD_DIR": str(rec_dir)}
    started = time.monotonic()
    proc = subprocess.Popen(["bash", rel], cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, text=True, errors="replace")
    try:
        _, err = proc.communicate(timeout=timeout)
        rc: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        _, err = proc.communicate()
        rc = None
    # A server backgrounded with `&` may still be writing its record when the script ends.
    deadline = time.monotonic() + SHIM_GRACE_S
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    _kill_group(proc.pid)
    out: dict[str, Any] = {"launcher": None, "argv": None, "wrapper": None, "env": {}, "files": {}, "error": None,
                           "rc": rc, "seconds": round(time.monotonic() - started, 2)}
    launches = [json.loads(p.read_text()) for p in sorted(rec_dir.glob("launch-*.json"))]
    calls_file = rec_dir / "calls.jsonl"
    logged = [json.loads(ln) for ln in calls_file.read_text().splitlines() if ln] if calls_file.exists() else []
    calls = [c["argv"] for c in sorted(logged, key=lambda c: (c["start"], c["pid"]))]
    out["calls"] = [c for c in calls if c[0] not in {"nvidia-smi", "amd-smi", "rocm-smi"}]
    client_file = rec_dir / "client.args"
    out["client"] = client_flags(client_file.read_text().split("\0")[:-1]) if client_file.exists() else None
    if launches:
        first = launches[0]
        full = first["wrapper"] + first["argv"] if first["wrapper"] else first["argv"]
        at = next((i for i, c in enumerate(out["calls"]) if c[1:] == full[1:]), len(out["calls"]))
        # What ran before the server besides the model download: package installs change the image.
        out["pre-launch"] = [c for c in out["calls"][:at] if c[0] not in {"hf", "huggingface-cli"}]
        out.update(launcher=first["launcher"], argv=first["argv"], wrapper=first["wrapper"] or None,
                   env=_env_diff(given, first["env"]), files=first["files"])
        if len(launches) > 1:
            out["extra-launches"] = [{"launcher": x["launcher"], "argv": x["argv"]} for x in launches[1:]]
    errors = []
    if rc is None:
        errors.append(f"timed out after {timeout:g} s")
    elif rc != 0:
        errors.append(f"script exited {rc}: {_tail(err)}")
    if not launches:
        errors.append("no server launch recorded" + (f" (stderr: {_tail(err)})" if rc == 0 else ""))
    out["error"] = "; ".join(errors) or None
    return _unmap(out, str(work))


#: run_benchmark_serving's switches (flags without a value).
_CLIENT_SWITCHES = frozenset({"--use-chat-template", "--dsv4", "--trust-remote-code"})


def client_flags(args: list[str]) -> dict[str, Any]:
    """The client-side choices of a `run_benchmark_serving` call: `--backend` and the prompt switches (the
    lengths, concurrency, paths and port are the job's own and compared elsewhere)."""
    flags: dict[str, Any] = {"backend": None, "use-chat-template": False, "dsv4": False, "trust-remote-code": False}
    i = 0
    while i < len(args):
        tok = args[i]
        if tok in _CLIENT_SWITCHES:
            flags[tok[2:]] = True
        elif tok == "--backend" and i + 1 < len(args):
            flags["backend"] = args[i + 1]
            i += 1
        i += 1
    flags["use-chat-template"] = flags["use-chat-template"] or flags["dsv4"]  # benchmark_lib: --dsv4 implies it
    return flags


def _env_diff(given: dict[str, str], seen: dict[str, str]) -> dict[str, str]:
    """Variables the script exported or changed (relative to the env it was given), less bookkeeping."""
    return {k: v for k, v in sorted(seen.items())
            if k not in BOOKKEEPING_ENV and not k.startswith(SHIM_ENV_PREFIX) and k not in ("PATH", "HOME", "LANG",
                                                                                          "TMPDIR")
            and given.get(k) != v}


def _tail(text: str, lines: int = 4) -> str:
    kept = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("+")]
    return " | ".join(kept[-lines:])[-600:] or "(no stderr)"


def _group_alive(pgid: int) -> bool:
    """Whether any process of the script's session (process group) still runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------------------------------------
# Fleet
# ---------------------------------------------------------------------------------------------------------


def fleet_groups(fixture_dir: Path = FIXTURE_DIR, framework: Sequence[str] = ()) -> list[ServeGroup]:
    """Single-node fixed-seq-len serve groups of the fixture, in plan order."""
    sweep = load_sweep([fixture_dir / "nvidia-master.yaml", fixture_dir / "amd-master.yaml"],
                       runners=fixture_dir / "runners.yaml")
    jobs = expand(sweep, PlanFilters(single_node=True, framework=tuple(framework))).jobs
    return group_jobs(jobs)


def capture_fleet(fixture_dir: Path = FIXTURE_DIR, reference_dir: Path = REFERENCE_DIR, *,
                  framework: Sequence[str] = (), workers: int | None = None,
                  min_conc_check: bool = False) -> list[dict[str, Any]]:
    """Capture every serve group (in plan order). With `min_conc_check`, each group whose concurrencies
    differ is also run at its lowest one and `at-min-conc` says what InferenceX's per-conc servers change."""
    require_shared(fixture_dir, reference_dir)
    groups = fleet_groups(fixture_dir, framework)
    n = workers or max(2, (os.cpu_count() or 2) * 2)

    def one(group: ServeGroup) -> dict[str, Any]:
        record = capture(group, reference_dir=reference_dir, fixture_dir=fixture_dir)
        if min_conc_check and len(group.concs) > 1 and record["argv"] is not None:
            low = capture(group, reference_dir=reference_dir, fixture_dir=fixture_dir, conc=min(group.concs))
            record["at-min-conc"] = {"conc": low["conc"], **launch_diff(record, low)}
        return record

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, groups))


def launch_diff(high: dict[str, Any], low: dict[str, Any]) -> dict[str, Any]:
    """What changes between two launches of one topology: flags (argv tokens), env values, file texts."""
    out: dict[str, Any] = {}
    if high["argv"] != low["argv"]:
        a, b = high["argv"] or [], low["argv"] or []
        out["argv-only-at-max"] = [t for t in a if t not in b]
        out["argv-only-at-min"] = [t for t in b if t not in a]
    env_keys = sorted(set(high["env"]) | set(low["env"]))
    env = {k: [high["env"].get(k), low["env"].get(k)] for k in env_keys if high["env"].get(k) != low["env"].get(k)}
    if env:
        out["env"] = env
    files = sorted(k for k in set(high["files"]) | set(low["files"]) if high["files"].get(k) != low["files"].get(k))
    if files:
        out["files"] = files
        out["file-texts-at-min"] = {k: low["files"].get(k) for k in files}
    if low["error"]:
        out["error"] = low["error"]
    out["same"] = not out
    return out


def flag_set(record: dict[str, Any]) -> tuple[str, ...]:
    """The launch's flag names (normalised `_`→`-`), for counting distinct flag sets."""
    argv = record.get("argv") or []
    return tuple(sorted({"--" + t.lstrip("-").split("=")[0].replace("_", "-") for t in argv if t.startswith("-")
                         and not t.lstrip("-").replace(".", "").isdigit()}))


def summarise(records: Sequence[dict[str, Any]]) -> str:
    by_fw: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_fw[r["framework"]].append(r)
    lines = [f"{'framework':10} {'topologies':>10} {'ok':>5} {'failed':>6} {'flag sets':>9} {'argv+env+files':>14}"]
    for fw, rs in sorted(by_fw.items()):
        ok = [r for r in rs if not r["error"]]
        full = {json.dumps([r["launcher"], r["argv"], r["env"], r["files"]], sort_keys=True) for r in ok}
        lines.append(f"{fw:10} {len(rs):>10} {len(ok):>5} {len(rs) - len(ok):>6} "
                     f"{len({flag_set(r) for r in ok}):>9} {len(full):>14}")
    fails = Counter((r["framework"], r["script"], r["error"]) for r in records if r["error"])
    for (fw, script, error), n in sorted(fails.items(), key=lambda kv: -kv[1]):
        lines.append(f"  FAIL x{n} {fw} {script}: {error}")
    checked = [r for r in records if "at-min-conc" in r]
    if checked:
        moved = [r for r in checked if not r["at-min-conc"]["same"]]
        lines.append(f"  conc-dependent launches: {len(moved)} of {len(checked)} multi-conc groups change between "
                     f"their lowest and highest conc ({len({r['script'] for r in moved})} scripts)")
    intended = Counter((r["script"], r["intended-script"], r["intended"]["error"]) for r in records
                       if "intended" in r)
    for (script, wanted, error), n in sorted(intended.items(), key=lambda kv: str(kv[0])):
        lines.append(f"  INTENDED x{n} {wanted} (launcher runs {script}): {'captured' if not error else error}")
    return "\n".join(lines)


def write_jsonl(records: Iterable[dict[str, Any]], out: Path) -> None:
    """Write atomically: a temp file beside `out`, then rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "w") as fh:
        for r in records:
            fh.write(json.dumps(r, sort_keys=False) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.recipes.ix_oracle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="jsonl file to write (atomically)")
    parser.add_argument("--framework", action="append", default=[], help="only this framework (repeatable)")
    parser.add_argument("--fixture-dir", type=Path, default=FIXTURE_DIR)
    parser.add_argument("--reference-dir", type=Path, default=REFERENCE_DIR)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--min-conc-check", action="store_true",
                        help="also run each group at its lowest conc and record what changes (`at-min-conc`)")
    args = parser.parse_args(argv)
    try:
        records = capture_fleet(args.fixture_dir, args.reference_dir, framework=args.framework, workers=args.workers,
                                min_conc_check=args.min_conc_check)
    except OracleUnavailable as exc:
        print(f"ix_oracle: skipped: {exc}", file=sys.stderr)
        return 2
    write_jsonl(records, args.out)
    print(summarise(records))
    print(f"wrote {len(records)} records to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
