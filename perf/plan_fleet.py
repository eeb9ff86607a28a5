"""Planner speed on the full InferenceX fleet: load + validate both master files, expand, group, preflight.

Run: .venv/bin/python perf/plan_fleet.py [--repeat N] [--shared PATH]
Prints the job/group counts (the parity figures) and the best-of-N wall time of each stage.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "fixtures" / "inferencex")
    args = parser.parse_args()

    from infersweep.config.sweep import load_sweep
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand_jobs
    from infersweep.plan.summary import build_plan
    from infersweep.recipes.preflight import preflight

    masters = [args.shared / "nvidia-master.yaml", args.shared / "amd-master.yaml"]
    filters = PlanFilters(single_node=True)
    t_load, sweep = best_of(args.repeat, lambda: load_sweep(masters, runners=args.shared / "runners.yaml"))
    t_expand, jobs = best_of(args.repeat, lambda: expand_jobs(sweep, filters))
    t_group, groups = best_of(args.repeat, lambda: group_jobs(jobs))
    t_plan, _ = best_of(args.repeat, lambda: build_plan(sweep, filters, preflight=preflight))
    print(f"entries {len(sweep.entries)}  jobs {len(jobs)}  eval jobs {sum(j.run_eval for j in jobs)}  "
          f"groups {len(groups)}")
    print(f"load+validate {t_load * 1000:7.1f} ms   (both master files, {sum(1 for _ in masters)} files)")
    print(f"expand        {t_expand * 1000:7.1f} ms")
    print(f"group         {t_group * 1000:7.1f} ms")
    print(f"full plan     {t_plan * 1000:7.1f} ms   (expand + group + memory preflight of every group)")


if __name__ == "__main__":
    main()
