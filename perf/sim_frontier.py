"""The simulator's modelled latency/throughput frontier, offline (no HTTP, no wall clock).

Prints, per concurrency, median TTFT, mean TPOT, tokens/s/user and total tokens/s/GPU for a closed loop
(`vllm bench serve --max-concurrency C --request-rate inf`, 2·C requests) on each topology. The table in
docs/simulator.md comes from the default run.

Usage:
    .venv/bin/python perf/sim_frontier.py [--model-profile minimax-m3] [--gpu-profile h200] [--isl 1024] [--osl 1024]
"""

from __future__ import annotations

import argparse

from infersweep.engines.sim.offline import closed_loop
from infersweep.engines.sim.profiles import get_gpu_profile, get_model_profile
from infersweep.engines.sim.roofline import Roofline, Topology
from infersweep.engines.sim.scheduler import SchedulerConfig

TOPOLOGIES = {"TP8": Topology(tp=8), "TEP8": Topology(tp=8, ep=8), "DEP8": Topology(tp=1, dp=8, ep=8)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-profile", default="minimax-m3")
    ap.add_argument("--gpu-profile", default="h200")
    ap.add_argument("--isl", type=int, default=1024)
    ap.add_argument("--osl", type=int, default=1024)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 16, 64, 256, 512])
    args = ap.parse_args()
    model, gpu = get_model_profile(args.model_profile), get_gpu_profile(args.gpu_profile)
    print(f"{model.name} on {gpu.name}, ISL {args.isl}, OSL {args.osl}, max-num-seqs {args.max_num_seqs} per rank")
    print("| topology | C | median TTFT ms | mean TPOT ms | tok/s/user | total tok/s/GPU | preemptions |")
    print("|---|---|---|---|---|---|---|")
    for name, topo in TOPOLOGIES.items():
        rf = Roofline(model, gpu, topo)
        blocks = rf.num_kv_blocks(0.9, 16) * topo.dp
        if blocks <= 0:
            print(f"| {name} | - | does not fit: no KV cache | | | | |")
            continue
        cfg = SchedulerConfig(max_num_seqs=args.max_num_seqs * topo.dp,
                              max_num_batched_tokens=8192 * topo.dp, num_blocks=blocks)
        for c in args.concurrency:
            p = closed_loop(rf, cfg, concurrency=c, isl=args.isl, osl=args.osl, num_requests=2 * c)
            print(f"| {name} | {c} | {p.median_ttft_s * 1000:,.0f} | {p.mean_tpot_s * 1000:.1f} | "
                  f"{p.interactivity:,.0f} | {p.total_throughput / topo.gpus:,.0f} | {p.num_preemptions} |")


if __name__ == "__main__":
    main()
