"""Client agreement against a real vLLM: our client (`infersweep bench`) and `vllm bench serve`, same server.

Starts vLLM's CPU build (`.venv-vllm`, scripts/real_engine/install.sh) with SmolLM2-135M through the
`vllm-process` engine and the recipe of configs/smollm2-cpu.yaml, then alternates the two clients (ours,
vLLM's, ours, vLLM's, …) on identical traffic: random token prompts, ISL 128 and OSL 64 exact (ours
`--random-range-ratio 1`, vLLM's `--random-range-ratio 0`), `--ignore-eos`, greedy (ours always sends
temperature 0; vLLM's gets `--temperature 0`), C = 4, 40 measured prompts after 4 warm-ups. Prints each
run, then the mean over repeats of both headline sets and their ratio (ours / vLLM's) as a markdown table.

    .venv/bin/python perf/client_vs_vllm_real.py [--repeats 2] [--conc 4] [--num-prompts 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, median
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "smollm2-cpu.yaml"
SERVED = "smollm2-135m"
sys.path.insert(0, str(ROOT))
from _harness import VENV_VLLM, real_lane_model  # noqa: E402

KEYS = ["request_throughput", "output_throughput", "total_token_throughput",
        "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "median_tpot_ms", "p99_tpot_ms",
        "mean_itl_ms", "median_itl_ms", "p99_itl_ms", "mean_e2el_ms", "median_e2el_ms", "p99_e2el_ms"]  # fmt: skip


def start_server(model: Path, log_dir: Path) -> tuple[Any, Any]:
    """The real server from the sweep file's recipe (engine `vllm-process`), ready."""
    from infersweep.airflow.context import free_port
    from infersweep.config.sweep import load_sweep
    from infersweep.engines.process import ProcessEngine
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand_jobs
    from infersweep.recipes.vllm import build_recipe

    sweep = load_sweep([CONFIG])
    (group,) = group_jobs(expand_jobs(sweep, PlanFilters(single_node=True)))
    group = group.model_copy(update={"model": str(model)})
    recipe = build_recipe(group, sweep.quirks_for(group.model_prefix, group.model), served_model_name=SERVED)
    engine = ProcessEngine(log_dir=log_dir, poll_interval_s=0.5)
    handle = engine.start(recipe.with_port(free_port()))
    try:
        engine.wait_ready(handle, deadline_s=600)
    except BaseException:
        engine.stop(handle)
        raise
    return engine, handle


def run_sampled(cmd: list[str], env: dict[str, str] | None = None) -> float:
    """Run a client; return the median CPU % of its process tree over 1 s samples.

    On 2 cores the client shares the CPU with the server, so a busier client slows the server it measures.
    The median is the benchmark phase's level: it outlasts the start-up (imports) in every run here.
    """
    import psutil

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    root = psutil.Process(proc.pid)
    samples: list[float] = []
    last: float | None = None
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        cpu = 0.0
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                cpu += t.user + t.system
            except psutil.Error:
                continue
        if last is not None and cpu >= last:
            samples.append(100.0 * (cpu - last))
        last = cpu
        time.sleep(1.0)
    if proc.poll() is None:
        proc.kill()
    if proc.wait(timeout=30) != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}")
    return median(samples) if samples else float("nan")


def run_ours(url: str, model: Path, a: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [str(ROOT / ".venv" / "bin" / "infersweep"), "bench", "--base-url", url, "--model", SERVED,
           "--tokenizer", str(model), "--isl", str(a.isl), "--osl", str(a.osl), "--conc", str(a.conc),
           "--num-prompts", str(a.num_prompts), "--num-warmups", str(a.conc), "--random-range-ratio", "1",
           "--result-file", str(out)]  # fmt: skip
    cpu = run_sampled(cmd)
    return {**json.loads(out.read_text()), "client_cpu_pct": cpu}


def run_vllm(url: str, model: Path, a: argparse.Namespace, out: Path) -> dict[str, Any]:
    cmd = [str(VENV_VLLM / "bin" / "vllm"), "bench", "serve", "--backend", "openai", "--base-url", url,
           "--model", SERVED, "--tokenizer", str(model), "--dataset-name", "random",
           "--random-input-len", str(a.isl), "--random-output-len", str(a.osl), "--random-range-ratio", "0",
           "--num-prompts", str(a.num_prompts), "--max-concurrency", str(a.conc), "--num-warmups", str(a.conc),
           "--ignore-eos", "--temperature", "0", "--percentile-metrics", "ttft,tpot,itl,e2el",
           "--disable-tqdm", "--save-result", "--result-dir", str(out.parent), "--result-filename", out.name]  # fmt: skip
    cpu = run_sampled(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    return {**json.loads(out.read_text()), "client_cpu_pct": cpu}


def _lengths(r: dict[str, Any]) -> str:
    ins, outs = r.get("input_lens") or [], r.get("output_lens") or []
    return (f"in {min(ins)}-{max(ins)} out {min(outs)}-{max(outs)}" if ins and outs
            else f"in {r.get('total_input_tokens')} out {r.get('total_output_tokens')} (totals)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--conc", type=int, default=4)
    ap.add_argument("--num-prompts", type=int, default=40)
    ap.add_argument("--isl", type=int, default=128)
    ap.add_argument("--osl", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    model = real_lane_model()
    if model is None:
        return 0
    with tempfile.TemporaryDirectory(prefix="isw-agree-") as work:
        wd = Path(work)
        os.environ["VLLM_CACHE_ROOT"] = str(wd / "vllm-cache")
        t0 = time.monotonic()
        engine, handle = start_server(model, wd / "logs")
        print(f"server {handle.engine_version} ready in {time.monotonic() - t0:.1f} s at {handle.base_url} "
              f"(load {os.getloadavg()[0]:.2f})", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {"ours": [], "vllm": []}
        try:
            for i in range(a.repeats):
                for name, fn in (("ours", run_ours), ("vllm", run_vllm)):
                    r = fn(handle.base_url, model, a, wd / f"{name}-{i}.json")
                    runs[name].append(r)
                    print(f"{name} #{i} (load {os.getloadavg()[0]:.2f}, client CPU {r['client_cpu_pct']:.0f} %): "
                          f"completed {r.get('completed')} {_lengths(r)} "
                          + " ".join(f"{k}={r[k]:.2f}" for k in [*KEYS[:3], "median_ttft_ms", "median_tpot_ms"]),
                          flush=True)
        finally:
            engine.stop(handle)
    print(f"\nISL {a.isl} OSL {a.osl} C={a.conc}, {a.num_prompts} prompts, mean of {a.repeats} runs each "
          "(alternated)\n")
    # Per-pair ratios too: run i of ours and run i of vLLM's are back to back, so a load change on the
    # shared machine between pairs cancels out of them.
    print("| metric | ours (`infersweep bench`) | `vllm bench serve` | ours / vLLM (means) | per pair |")
    print("|---|---|---|---|---|")
    for k in KEYS:
        o, v = mean(r[k] for r in runs["ours"]), mean(r[k] for r in runs["vllm"])
        pairs = " ".join(f"{x[k] / y[k]:.3f}" for x, y in zip(runs["ours"], runs["vllm"], strict=True))
        print(f"| {k} | {o:.2f} | {v:.2f} | {o / v:.3f} | {pairs} |")
    o, v = (median(r["client_cpu_pct"] for r in runs[n]) for n in ("ours", "vllm"))
    print(f"| client CPU, median of 1 s samples (%) | {o:.0f} | {v:.0f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
