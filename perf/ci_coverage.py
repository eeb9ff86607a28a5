"""Are the confidence intervals honest? Coverage of 95 % intervals on the simulated engine with known noise.

For one point (llama-3.1-8b on an H100, TP1; ISL 1024 / OSL 128 with InferenceX's 0.8 range ratio, i.e.
lengths uniform in [819, 1024] and [102, 128]; 8 requests per unit of concurrency; a few concurrencies),
runs the offline closed loop (`engines.sim.offline.closed_loop_run`) with a seeded `NoiseModel` and asks,
per headline metric, how often a 95 % interval contains the true value:

- **true value**: the metric's expectation under the noise model (and the random lengths), at the same
  concurrency and number of requests, estimated as the mean over `--mc` independent runs (default 1,000; its
  Monte Carlo error is printed and is a few percent of the intervals' half-widths).
- **repeats n=3 / n=5** (run noise on: run σ 3 %, step σ 2 %): Student-t interval over the runs' values
  (`bench.intervals.repeat_intervals`), the method for repeated points.
- **bootstrap, run noise on**: the within-run bootstrap of a single run (`point_intervals`). It resamples
  requests, so it cannot see the run-level factor that moves every request of the run alike: it is expected
  to undercover here, and the script shows by how much. Its honest use is as a lower bound.
- **bootstrap, run noise off** (run σ 0, step σ 2 %): the case where the variation between requests (random
  lengths, step jitter) is the only noise, which is what a bootstrap over requests can cover — as far as the
  requests of one closed-loop run are independent, which they are not quite (they share batches).

Each case has `--trials` independent trials (default 300 ≥ 200); the 95 % binomial interval of the
measured coverage is printed next to it (±1.3 points at 300 trials: an exact method lands outside 93–97 %
by chance about one time in five).

Usage:
    .venv/bin/python perf/ci_coverage.py [--trials 300] [--mc 1000] [--concurrency 4 16 64] [--jobs 2]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import statistics
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from infersweep.bench.intervals import (
    INTERVAL_METRICS,
    Interval,
    point_intervals,
    point_values,
    repeat_intervals,
)
from infersweep.engines.sim.noise import NoiseModel
from infersweep.engines.sim.offline import closed_loop_run
from infersweep.engines.sim.profiles import get_gpu_profile, get_model_profile
from infersweep.engines.sim.roofline import Roofline, Topology
from infersweep.engines.sim.scheduler import SchedulerConfig

LEVEL = 0.95
ISL, OSL, RANGE_RATIO = 1024, 128, 0.8
REQUESTS_PER_CONC = 8
RUN_SIGMA, STEP_SIGMA = 0.03, 0.02
NOISE_ON, NOISE_OFF = "on", "off"
_SETUP: tuple[Roofline, SchedulerConfig] | None = None


def _setup() -> tuple[Roofline, SchedulerConfig]:
    global _SETUP
    if _SETUP is None:
        rf = Roofline(get_model_profile("llama-3.1-8b"), get_gpu_profile("h100"), Topology(tp=1))
        _SETUP = rf, SchedulerConfig(max_num_seqs=256, max_num_batched_tokens=8192,
                                     num_blocks=rf.num_kv_blocks(0.9, 16))
    return _SETUP


def run_once(task: tuple[str, int, int, int, bool]) -> tuple[dict[str, float], dict[str, dict[str, Any]] | None]:
    """One benchmark run: (noise kind, concurrency, stream, index, bootstrap?) -> values (and intervals)."""
    kind, conc, stream, k, boot = task
    rf, cfg = _setup()
    rng = np.random.default_rng([stream, conc, k])
    n = REQUESTS_PER_CONC * conc
    lo_i, lo_o = math.floor(RANGE_RATIO * ISL), math.floor(RANGE_RATIO * OSL)
    lengths = list(zip(rng.integers(lo_i, ISL + 1, n).tolist(), rng.integers(lo_o, OSL + 1, n).tolist(),
                       strict=True))
    seed = int(rng.integers(0, 2**31))
    noise = NoiseModel(run_sigma=RUN_SIGMA if kind == NOISE_ON else 0.0, step_sigma=STEP_SIGMA, seed=seed)
    _, raw = closed_loop_run(rf, cfg, concurrency=conc, lengths=lengths, noise=noise)
    values = point_values(raw, gpus=1)
    if not boot:
        return values, None
    ivs = point_intervals(raw, gpus=1, level=LEVEL, n_boot=1000, seed=k)
    return values, {m: iv.to_json() for m, iv in ivs.items()}


def _binom_ci(hits: int, n: int) -> tuple[float, float]:
    """Wilson 95 % interval of a proportion."""
    z = 1.959964
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _verdict(hits: int, n: int) -> str:
    cov = hits / n
    lo, hi = _binom_ci(hits, n)
    if 0.93 <= cov <= 0.97:
        return "ok"
    if lo <= LEVEL <= hi:
        return "ok (within sampling error)"
    return "UNDERCOVERS" if cov < LEVEL else "overcovers"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--mc", type=int, default=1000, help="runs estimating each true value")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(f"llama-3.1-8b, h100, TP1, ISL {ISL} / OSL {OSL} (range ratio {RANGE_RATIO}), {REQUESTS_PER_CONC}·C "
          f"requests per run; noise on: run σ {RUN_SIGMA:.0%}, step σ {STEP_SIGMA:.0%}, τ 30 s; noise off: run σ 0, "
          f"step σ {STEP_SIGMA:.0%}. {args.trials} trials per case, true values from {args.mc} runs, "
          f"{LEVEL:.0%} intervals.")
    # stream ids keep every run's seeds distinct: 1 = truth (on), 2 = trials (on), 3 = truth (off), 4 = trials (off)
    results: dict[tuple[str, int], dict[str, list[float]]] = {}
    rows: list[tuple[str, str, int, int, int, float]] = []  # method, metric, conc, hits, n, mean rel half-width
    mc_err: dict[tuple[str, int], dict[str, float]] = {}
    with mp.get_context("fork").Pool(args.jobs) as pool:
        for conc in args.concurrency:
            truth: dict[str, dict[str, float]] = {}
            for kind, stream in ((NOISE_ON, 1), (NOISE_OFF, 3)):
                runs = pool.map(run_once, [(kind, conc, stream, k, False) for k in range(args.mc)], chunksize=16)
                truth[kind] = {m: statistics.fmean(v[m] for v, _ in runs) for m in INTERVAL_METRICS}
                mc_err[(kind, conc)] = {m: statistics.stdev(v[m] for v, _ in runs) / math.sqrt(args.mc)
                                        / truth[kind][m] for m in INTERVAL_METRICS}
                results[(kind, conc)] = {m: [v[m] for v, _ in runs] for m in INTERVAL_METRICS}
            # Trials with noise on: 5 runs each; the first also gets its within-run bootstrap.
            tasks = [(NOISE_ON, conc, 2, t * 5 + r, r == 0) for t in range(args.trials) for r in range(5)]
            on = pool.map(run_once, tasks, chunksize=8)
            off = pool.map(run_once, [(NOISE_OFF, conc, 4, t, True) for t in range(args.trials)], chunksize=8)
            for m in INTERVAL_METRICS:
                for n_rep in (3, 5):
                    hits, widths = 0, []
                    for t in range(args.trials):
                        vals = [on[t * 5 + r][0][m] for r in range(n_rep)]
                        iv = repeat_intervals(vals, LEVEL)
                        hits += iv.contains(truth[NOISE_ON][m])
                        widths.append(iv.half_width / truth[NOISE_ON][m])
                    rows.append((f"repeats n={n_rep} (t)", m, conc, hits, args.trials, statistics.fmean(widths)))
                for label, kind, trial_runs in (("bootstrap, run noise on", NOISE_ON, [on[t * 5] for t in range(args.trials)]),
                                                ("bootstrap, run noise off", NOISE_OFF, off)):
                    hits, widths, n = 0, [], 0
                    for _, ivs in trial_runs:
                        if ivs is None or m not in ivs:
                            continue
                        iv = Interval.from_json(ivs[m])
                        n += 1
                        hits += iv.contains(truth[kind][m])
                        widths.append(iv.half_width / truth[kind][m])
                    if n:
                        rows.append((label, m, conc, hits, n, statistics.fmean(widths)))
            print(f"  C={conc}: done ({time.perf_counter() - t0:.0f} s)", flush=True)
    concs = args.concurrency
    print()
    print("Run-to-run spread of each metric (relative σ over the truth runs; noise on / off):")
    print("| metric | " + " | ".join(f"C={c} on / off" for c in concs) + " |")
    print("|---|" + "---|" * len(concs))
    for m in INTERVAL_METRICS:
        cells = []
        for c in concs:
            sd = [statistics.stdev(results[(k, c)][m]) / statistics.fmean(results[(k, c)][m]) for k in (NOISE_ON, NOISE_OFF)]
            cells.append(f"{sd[0]:.2%} / {sd[1]:.2%}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    worst_mc = max(v for d in mc_err.values() for v in d.values())
    print(f"Monte Carlo error of the true values: at most {worst_mc:.3%} (relative standard error).")
    print()
    print("Coverage of 95 % intervals (% of trials whose interval contains the true value; [Wilson 95 % CI]; "
          "mean half-width relative to the truth):")
    print("| method | metric | " + " | ".join(f"C={c}" for c in concs) + " | verdict |")
    print("|---|---|" + "---|" * len(concs) + "---|")
    by_key = {(r[0], r[1], r[2]): r for r in rows}
    methods = list(dict.fromkeys(r[0] for r in rows))
    for meth in methods:
        for m in INTERVAL_METRICS:
            cells, verdicts = [], []
            for c in concs:
                r = by_key.get((meth, m, c))
                if r is None:
                    cells.append("n/a")
                    continue
                _, _, _, hits, n, width = r
                lo, hi = _binom_ci(hits, n)
                cells.append(f"{hits / n:.1%} [{lo:.0%}–{hi:.0%}] ±{width:.2%}")
                verdicts.append(_verdict(hits, n))
            worst = ("UNDERCOVERS" if "UNDERCOVERS" in verdicts else "overcovers" if "overcovers" in verdicts
                     else "ok (within sampling error)" if "ok (within sampling error)" in verdicts else "ok")
            print(f"| {meth} | {m} | " + " | ".join(cells) + f" | {worst} |")
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
