"""Aggregated vs disaggregated serving on the simulator, offline (no HTTP, no wall clock).

For one model on one GPU type, prints per concurrency: median TTFT, median TPOT, tokens/s/user (1 / mean
TPOT) and total tokens/s per GPU (every GPU of every pool counted, as InferenceX does), for
- aggregated TP8 (8 GPUs),
- 1P+1D: one TP8 prefill worker + one TP8 decode worker (16 GPUs),
- 1P+2D: one TP8 prefill worker + two TP8 decode workers (24 GPUs),
under a closed loop (`vllm bench serve --max-concurrency C --request-rate inf`, 2·C requests). The KV transfer
is modelled by `engines/sim/kv_transfer.py` (engine --kv-transfer over the GPU's usual link). Also prints the
model's unloaded KV transfer time for one prompt, and the wall seconds the whole run took.

Usage:
    .venv/bin/python perf/sim_disagg.py [--model-profile deepseek-r1] [--gpu-profile h200] [--isl 8192]
        [--osl 1024] [--kv-transfer nixl] [--concurrency 1 8 32 64 128 256]
"""

from __future__ import annotations

import argparse
import time

from infersweep.engines.sim.kv_transfer import TRANSFER_ENGINES, KvTransferModel
from infersweep.engines.sim.offline import LoadPoint, closed_loop_run, disagg_closed_loop_run, worker_model
from infersweep.engines.sim.profiles import get_gpu_profile, get_model_profile
from infersweep.engines.sim.roofline import Topology


def _row(name: str, gpus: int, c: int, p: LoadPoint) -> str:
    return (f"| {name} | {gpus} | {c} | {p.median_ttft_s * 1000:,.0f} | {p.median_tpot_s * 1000:.1f} | "
            f"{p.interactivity:,.1f} | {p.total_throughput / gpus:,.0f} | {p.output_throughput / gpus:,.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-profile", default="deepseek-r1")
    ap.add_argument("--gpu-profile", default="h200")
    ap.add_argument("--tp", type=int, default=8, help="TP of every worker (aggregated, prefill, decode)")
    ap.add_argument("--isl", type=int, default=8192)
    ap.add_argument("--osl", type=int, default=1024)
    ap.add_argument("--kv-transfer", default="nixl", choices=sorted(TRANSFER_ENGINES))
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64, 128, 256])
    args = ap.parse_args()
    t0 = time.perf_counter()
    model, gpu = get_model_profile(args.model_profile), get_gpu_profile(args.gpu_profile)
    worker = worker_model(model, gpu, Topology(tp=args.tp), max_num_seqs=args.max_num_seqs)
    kv = KvTransferModel.build(worker.roofline, gpu.name, engine=args.kv_transfer)
    print(f"{model.name} on {gpu.name}, TP{args.tp} workers, ISL {args.isl}, OSL {args.osl}, max-num-seqs "
          f"{args.max_num_seqs}; KV {args.kv_transfer} over {kv.link} ({kv.link_gb_s:.0f} GB/s/GPU x "
          f"{kv.efficiency:.2f}): {kv.bytes_per_rank(args.isl) / 1e6:,.1f} MB per prefill GPU per prompt, "
          f"{kv.duration_s(args.isl) * 1000:.2f} ms unloaded")
    print("| topology | GPUs | C | median TTFT ms | median TPOT ms | tok/s/user | total tok/s/GPU | output tok/s/GPU |")
    print("|---|---|---|---|---|---|---|---|")
    for c in args.concurrency:
        lengths = [(args.isl, args.osl)] * (2 * c)
        agg, _ = closed_loop_run(worker.roofline, worker.config, concurrency=c, lengths=lengths)
        print(_row(f"aggregated TP{args.tp}", worker.gpus, c, agg))
        for n_decode in (1, 2):
            p, _ = disagg_closed_loop_run(worker, worker, kv, num_prefill=1, num_decode=n_decode, concurrency=c,
                                          lengths=lengths)
            print(_row(f"1P+{n_decode}D TP{args.tp}", worker.gpus * (1 + n_decode), c, p))
    print(f"\n(wall {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
