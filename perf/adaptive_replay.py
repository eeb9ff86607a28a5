"""Adaptive sweeps against the full ladder: how many points, how many GPU-seconds, how large a frontier error.

Records every point of the full concurrency ladder once, then replays the adaptive policy
(`infersweep.plan.adaptive`) against those recordings: the policy sees only the points it asks for, in the
order it asks for them. The full ladder's frontier and the adaptive one are compared at every
interactivity the full frontier covers (largest relative throughput gap).

Sources:
- `sim`: the simulated engine (offline scheduler, the same step-time model the HTTP simulator serves)
  with run-to-run noise switched on (`--run-sigma`, default 3 %; `--step-sigma` 2 %). Scopes: every
  MiniMax-M3 Hopper group of configs/minimaxm3-hopper.yaml, and a sample of the InferenceX fleet's
  single-node groups (../shared/fixtures/inferencex-843c6254f) whose model the simulator has a profile for.
- `real`: perf/data/vllm_cpu_ladder.json, recorded on real vLLM (CPU) by perf/real_ladder.py.

Usage:
    .venv/bin/python perf/adaptive_replay.py [--source sim|real|all] [--fleet-sample 120] [--tolerance 0.01]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from infersweep.plan.adaptive import AdaptiveOptions, Observation, ReplayResult, replay

ROOT = Path(__file__).resolve().parents[1]
#: InferenceX's fleet today (843c6254f) and in June 2026: together the sample reaches past 100 groups the simulator
#: can run (some recipes use flags or sizes it does not model, and are left out).
FIXTURES = (ROOT.parent / "shared" / "fixtures" / "inferencex-843c6254f", ROOT.parent / "shared" / "fixtures" / "inferencex")
CACHE = Path(os.environ.get("INFERSWEEP_REPLAY_CACHE", "/tmp/infersweep-adaptive-cache.json"))
#: Sim model profiles for fleet models without their own (the topology, ladder and flags stay the fleet's).
STAND_IN = {"dense": "llama-3.1-70b", "moe": "deepseek-r1"}

Ladder = dict[int, Observation]
ScopeData = dict[str, tuple[str, Ladder]]


# ------------------------------------------------------------------------------------------- sim recording
def _sim_setup(recipe: Any, gpu: str) -> tuple[Any, Any]:
    """Roofline and scheduler config of a recipe on the simulator (plan.priors builds them as `infersweep sim
    serve` does); fleet models without a profile of their own get a stand-in one."""
    from infersweep.engines.sim.profiles import find_model_profile
    from infersweep.plan.priors import sim_core

    profile = None
    if find_model_profile(recipe.model) is None:
        moe = any(w in recipe.model.lower() for w in ("deepseek", "kimi", "qwen3-235", "gpt-oss", "minimax", "glm"))
        profile = STAND_IN["moe" if moe else "dense"]
    core = sim_core(recipe, gpu, profile)
    if core is None:
        raise ValueError(f"the simulator cannot model {recipe.model} on {gpu} (an unknown flag, or it does not fit)")
    return core.roofline, core.scheduler.config


def record_sim_ladder(group: Any, recipe: Any, gpu: str, *, run_sigma: float, step_sigma: float,
                      prompts_per_conc: int, seed: int) -> tuple[Ladder, Ladder]:
    """Every concurrency of a group measured once with noise, and once without (the roofline prior)."""
    from infersweep.engines.sim.noise import NoiseModel
    from infersweep.engines.sim.offline import closed_loop

    roofline, config = _sim_setup(recipe, gpu)
    noisy: Ladder = {}
    clean: Ladder = {}
    for conc in group.concs:
        n = max(prompts_per_conc * conc, 8)
        digest = hashlib.sha256(f"{seed}:{group.id}:{conc}".encode()).digest()
        noise = NoiseModel(run_sigma=run_sigma, step_sigma=step_sigma, seed=int.from_bytes(digest[:4], "big"))
        for target, model in ((noisy, noise), (clean, None)):
            try:
                p = closed_loop(roofline, config, concurrency=conc, isl=group.isl, osl=group.osl,
                                num_requests=n, noise=model)
            except RuntimeError:
                target[conc] = Observation(conc, 0.0, 0.0, ok=False)
                continue
            target[conc] = Observation(conc, p.interactivity, p.total_throughput / group.gpus,
                                       gpu_s=p.duration_s * group.gpus)
    return noisy, clean


def _groups(paths: Iterable[Path], keys_filter: Any = None) -> list[tuple[Any, Any, str]]:
    """(group, recipe, gpu profile) of every single-node fixed-seq-len group the files plan."""
    from infersweep.config.sweep import load_sweep
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand
    from infersweep.recipes import rules
    from infersweep.recipes.hardware import gpu_for_runner
    from infersweep.recipes.registry import build_recipe

    sweep = load_sweep([str(p) for p in paths])
    out = []
    for group in group_jobs(expand(sweep, PlanFilters(single_node=True)).jobs):
        if keys_filter is not None and not keys_filter(group):
            continue
        spec = gpu_for_runner(group.runner)
        if spec is None:
            continue
        quirks = sweep.quirks_for(group.model_prefix, group.model)
        group = rules.with_quirk_context(group, quirks)
        try:
            recipe = build_recipe(group, quirks, served_model_name=group.model)
        except Exception:  # a recipe the fleet cannot build here is not part of the sample
            continue
        out.append((group, recipe, spec.name))
    return out


def sim_scopes(*, fleet_sample: int, run_sigma: float, step_sigma: float, prompts_per_conc: int,
               seed: int) -> dict[str, tuple[ScopeData, dict[str, Any]]]:
    """Scopes (config key x seq len) of recorded sim ladders, with their roofline priors, cached on disk."""
    cache: dict[str, Any] = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    picked = [("minimax", g) for g in _groups([ROOT / "configs" / "minimaxm3-hopper.yaml"])]
    by_scope: dict[tuple[str, str, int, int], list[Any]] = defaultdict(list)
    seen: set[str] = set()
    for fixture in FIXTURES if fleet_sample else ():
        if not fixture.exists():
            continue
        tag = "today" if fixture.name.endswith("843c6254f") else "june"
        for g in _groups(sorted(fixture.glob("*-master.yaml"))):
            if len(g[0].concs) >= 2 and g[0].id not in seen:  # a topology in both snapshots counts once
                seen.add(g[0].id)
                by_scope[(tag, g[0].config_key, g[0].isl, g[0].osl)].append(g)
    if by_scope:
        # A stable sample: every k-th scope of the sorted fleet, whole scopes (all their topologies) at a time.
        scopes = sorted(by_scope)
        total = sum(len(v) for v in by_scope.values())
        step = max(1, total // max(1, fleet_sample))
        taken = 0
        for key in scopes[::step]:
            for g in by_scope[key]:
                picked.append((f"fleet-{key[0]}", g))
                taken += 1
            if taken >= fleet_sample:
                break
    out: dict[str, tuple[ScopeData, dict[str, Any]]] = {}
    t0 = time.monotonic()
    for i, (source, (group, recipe, gpu)) in enumerate(picked):
        ck = f"{group.id}:{run_sigma}:{step_sigma}:{prompts_per_conc}:{seed}"
        if ck not in cache:
            try:
                noisy, clean = record_sim_ladder(group, recipe, gpu, run_sigma=run_sigma, step_sigma=step_sigma,
                                                 prompts_per_conc=prompts_per_conc, seed=seed)
            except (SystemExit, Exception) as exc:  # a recipe the simulator refuses (e.g. does not fit)
                cache[ck] = {"error": str(exc)}
            else:
                cache[ck] = {"noisy": {c: o.__dict__ for c, o in noisy.items()},
                             "clean": {c: o.__dict__ for c, o in clean.items()}}
            if i % 10 == 0:
                CACHE.write_text(json.dumps(cache))
                print(f"  recorded {i + 1}/{len(picked)} groups ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
        entry = cache[ck]
        if "error" in entry:
            continue
        noisy = {int(c): Observation(**o) for c, o in entry["noisy"].items()}
        clean = {int(c): Observation(**o) for c, o in entry["clean"].items()}
        if not any(o.ok for o in noisy.values()):
            continue
        name = f"{source}:{group.config_key}:{group.seq_len}"
        data, priors = out.setdefault(name, ({}, {}))
        data[group.id] = (group.layout, noisy)
        priors[group.id] = ("roofline", 0.25, clean)
    CACHE.write_text(json.dumps(cache))
    return out


# ------------------------------------------------------------------------------------------------ real data
def real_scopes(path: Path) -> dict[str, tuple[ScopeData, dict[str, Any]]]:
    """The real vLLM CPU ladder as one scope (no roofline prior for a CPU)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _ladder_data import load_real_ladder  # type: ignore[import-not-found]

    data: ScopeData = {}
    for g in load_real_ladder(path):
        ladder = {int(p["conc"]): Observation(int(p["conc"]), float(p["median_intvty"]), float(p["tput_per_gpu"]),
                                              gpu_s=float(p.get("duration_s") or 0.0) * int(g.get("gpus", 1)),
                                              ok=not p.get("failed_point", False))
                  for p in g["points"]}
        data[str(g["id"])] = (str(g["id"]), ladder)
    return {"real:vllm-cpu": (data, {})}


# -------------------------------------------------------------------------------------------------- report
def run(scopes: dict[str, tuple[ScopeData, dict[str, Any]]], options: AdaptiveOptions, *, use_prior: bool,
        verbose: bool) -> dict[str, Any]:
    """Replay every scope; print one line per scope (verbose) and return the totals."""
    totals: dict[str, Any] = {"points": 0, "total": 0, "gpu_s": 0.0, "total_gpu_s": 0.0, "worst": 0.0,
                              "worst_scope": "", "scopes": 0, "groups": 0, "skipped_groups": 0, "worst_linear": 0.0,
                              "over_2pct": 0, "shortfall": 0.0}
    for name, (data, priors) in sorted(scopes.items()):
        result: ReplayResult = replay(data, options=options, priors=priors if use_prior else None)
        totals["points"] += result.measured
        totals["total"] += result.total
        totals["gpu_s"] += result.gpu_s
        totals["total_gpu_s"] += result.total_gpu_s
        totals["scopes"] += 1
        totals["groups"] += len(data)
        totals["skipped_groups"] += sum(d.action == "skip-group" for d in result.decisions)
        if result.gap >= totals["worst"]:
            totals["worst"], totals["worst_scope"] = result.gap, name
        totals["worst_linear"] = max(totals["worst_linear"], result.gap_linear)
        totals["over_2pct"] += result.gap > 0.02
        totals["shortfall"] = max(totals["shortfall"], result.shortfall)
        if verbose:
            print(f"  {name:60s} groups {len(data):2d}  points {result.measured:3d}/{result.total:3d}  "
                  f"gap {result.gap * 100:5.2f}% (linear {result.gap_linear * 100:5.2f}%)")
    return totals


def oracle(scopes: dict[str, tuple[ScopeData, dict[str, Any]]], *, limit: float = 0.02, two_sided: bool = True) -> tuple[int, int]:
    """An upper bound for any policy: knowing every recorded value, greedily drop the point whose removal
    moves the frontier least while the frontier error stays within `limit`. Returns (dropped, total)."""
    from infersweep.plan.adaptive import Frontier, FrontierPoint, frontier_gap

    dropped = total = 0
    for data, _priors in scopes.values():
        pts = [FrontierPoint(o.x, o.y, label, c) for label, ladder in data.values() for c, o in ladder.items() if o.ok]
        total += sum(len(ladder) for _label, ladder in data.values())
        full = Frontier.of(pts)
        cur = list(pts)
        while True:
            best: tuple[float, int] | None = None
            for i in range(len(cur)):
                g = frontier_gap(full, Frontier.of(cur[:i] + cur[i + 1:]), samples=100, two_sided=two_sided)
                if g <= limit and (best is None or g < best[0]):
                    best = (g, i)
            if best is None:
                break
            cur.pop(best[1])
        dropped += len(pts) - len(cur)
    return dropped, total


def dominated(scopes: dict[str, tuple[ScopeData, dict[str, Any]]], *, margin: float = 0.0) -> tuple[int, int]:
    """Points some other point of the scope beats on both axes (throughput by more than `margin`): the most a
    policy that cannot see a point's noise draw can drop without risking the frontier. Dropping a frontier
    vertex instead leaves the frontier to interpolation, which misses the vertex's own noise (>= 3 %), so a
    2 % worst-case bound holds only by luck. Returns (dominated, total)."""
    count = total = 0
    for data, _priors in scopes.values():
        pts = [o for _label, ladder in data.values() for o in ladder.values() if o.ok]
        total += sum(len(ladder) for _label, ladder in data.values())
        count += sum(any(q is not p and q.x >= p.x and q.y > p.y * (1 + margin) for q in pts) for p in pts)
    return count, total


def slo_check(scopes: dict[str, tuple[ScopeData, dict[str, Any]]]) -> dict[str, Any]:
    """SLO search against the full ladder on every recorded group: for targets on median TPOT placed between
    each pair of the group's measured values (and above and below all of them), does bisection find the
    ladder's answer, and in how many points compared with log2(ladder length) + 2?"""
    from infersweep.plan.slo import ladder_answer, slo_search

    searches = agree = within = 0
    worst_ratio = 0.0
    for data, _priors in scopes.values():
        for _label, ladder in data.values():
            points = {c: ({"median_tpot_ms": 1000.0 / o.x} if o.ok and o.x > 0 else None) for c, o in ladder.items()}
            tpots = sorted(p["median_tpot_ms"] for p in points.values() if p is not None)
            cuts = [tpots[0] * 0.5, *((a + b) / 2 for a, b in itertools.pairwise(tpots)), tpots[-1] * 2]
            bound = math.log2(len(ladder)) + 2
            for cut in cuts:
                target = {"median_tpot_ms": cut}
                used: list[int] = []
                search = slo_search(sorted(ladder), target, lambda c, u=used, p=points: (u.append(c), (p[c], 1.0))[1])
                searches += 1
                agree += search.best == ladder_answer(points, target)
                within += len(used) <= bound
                worst_ratio = max(worst_ratio, len(used) / bound)
    return {"searches": searches, "agree": agree, "within": within, "worst_ratio": worst_ratio}


def summarize(label: str, t: dict[str, Any]) -> str:
    """One table row."""
    frac = t["points"] / t["total"] if t["total"] else math.nan
    gfrac = t["gpu_s"] / t["total_gpu_s"] if t["total_gpu_s"] else math.nan
    return (f"| {label} | {t['scopes']} | {t['groups']} | {t['skipped_groups']} | {t['points']}/{t['total']} "
            f"({frac * 100:.1f}%) | {(1 - frac) * 100:.1f}% | {(1 - gfrac) * 100:.1f}% | "
            f"{t['worst'] * 100:.2f}% ({t['worst_scope']}) | {t['over_2pct']} | {t['shortfall'] * 100:.2f}% | "
            f"{t['worst_linear'] * 100:.2f}% |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", choices=["sim", "real", "all"], default="all")
    ap.add_argument("--fleet-sample", type=int, default=120, help="fleet groups to sample (>= 100 for the issue)")
    ap.add_argument("--run-sigma", type=float, default=0.03)
    ap.add_argument("--step-sigma", type=float, default=0.02)
    ap.add_argument("--prompts-per-conc", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tolerance", type=float, default=AdaptiveOptions().tolerance)
    ap.add_argument("--noise", type=float, default=AdaptiveOptions().noise)
    ap.add_argument("--real-data", type=Path, default=Path(__file__).parent / "data" / "vllm_cpu_ladder.json")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--oracle", action="store_true", help="also print the best any policy could do (slow)")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    options = AdaptiveOptions(tolerance=args.tolerance, noise=args.noise)
    sets: list[tuple[str, dict[str, Any], bool]] = []
    if args.source in ("sim", "all"):
        sim = sim_scopes(fleet_sample=args.fleet_sample, run_sigma=args.run_sigma, step_sigma=args.step_sigma,
                         prompts_per_conc=args.prompts_per_conc, seed=args.seed)
        minimax = {k: v for k, v in sim.items() if k.startswith("minimax:")}
        fleet = {k: v for k, v in sim.items() if k.startswith("fleet")}
        for label, scopes in (("sim MiniMax-M3 Hopper", minimax), ("sim fleet sample", fleet)):
            sets.append((label + ", measured bounds only", scopes, False))
            sets.append((label + ", + roofline prior", scopes, True))
    if args.source in ("real", "all"):
        if args.real_data.exists():
            sets.append(("real vLLM CPU", real_scopes(args.real_data), False))
        else:
            print(f"real data {args.real_data} is missing: run perf/real_ladder.py first", file=sys.stderr)
    print(f"adaptive policy: tolerance {options.tolerance * 100:.1f}%, noise allowance {options.noise * 100:.1f}%; "
          f"sim noise: run sigma {args.run_sigma * 100:.0f}%, step sigma {args.step_sigma * 100:.0f}%")
    print("| data | scopes | groups | groups skipped | points measured | points saved | GPU-s saved | "
          "worst frontier error | scopes > 2 % | worst shortfall only | worst, lines on linear axes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, scopes, prior in sets:
        totals = run(scopes, options, use_prior=prior, verbose=args.verbose)
        print(summarize(label, totals))
    print("\nSLO search (targets on median TPOT between each pair of a group's measured values) against the ladder:")
    for label, scopes, prior in sets:
        if prior:
            continue
        r = slo_check(scopes)
        print(f"  {label.split(',')[0]}: {r['searches']} searches, same answer as the full ladder in {r['agree']}, "
              f"within log2(ladder) + 2 points in {r['within']} (most used: {r['worst_ratio'] * 100:.0f}% of that bound)")
    print("\nPareto-dominated points (another point of the scope is at least as interactive and has more "
          "throughput per GPU): the most a policy that cannot see noise draws can drop")
    for label, scopes, prior in sets:
        if not prior and scopes:
            parts = []
            for margin in (0.0, 0.02, 2 * options.noise):
                n, total = dominated(scopes, margin=margin)
                parts.append(f"by > {margin * 100:.0f}%: {n}/{total} ({n / total * 100:.1f}%)")
            print(f"  {label.split(',')[0]}: " + "; ".join(parts))
    if args.oracle:
        print("\nOracle (knows every recorded value; greedy): points that can be dropped with the frontier error <= 2 %")
        for label, scopes, prior in sets:
            if scopes and (prior or label.startswith("real")):
                for two_sided in (True, False):
                    dropped, total = oracle(scopes, two_sided=two_sided)
                    what = "either direction" if two_sided else "shortfall only"
                    print(f"  {label.split(',')[0]} ({what}): {dropped}/{total} ({dropped / total * 100:.1f}%)")


if __name__ == "__main__":
    main()
