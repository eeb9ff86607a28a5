"""How many serve topologies get exactly the launch InferenceX's own scripts make (issue 17).

Usage: .venv/bin/python perf/recipe_fidelity.py [--oracle launches.jsonl] [--framework sglang] [--show N]

The oracle (tests/recipes/ix_oracle.py) runs every InferenceX script of the shared fixture (1ef98e3ed) with
a stub benchmark_lib.sh and command shims at each serve topology's highest concurrency, and records the
server's argv, the env the script exported and the files it generated. For each of those launches this
builds infersweep's recipe for the same serve group and compares them with tests/recipes/launch_compare.py
(same launcher, same flags and values with host/port/model path aside and `_`/`-` normalised, same env,
same generated files as parsed YAML). Prints, per framework, identical / total, recipes that fail to build,
and the most common differences.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURE = SHARED / "fixtures" / "inferencex"
TOPOLOGY = ("config-key", "isl", "osl", "tp", "ep", "dp-attn", "pp", "dcp-size", "pcp-size", "spec-decoding")


def load_oracle(path: Path | None) -> list[dict[str, Any]]:
    if path is not None:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    sys.path.insert(0, str(ROOT))
    from tests.recipes.ix_oracle import capture_fleet  # type: ignore[import-not-found]

    return list(capture_fleet(FIXTURE, SHARED / "reference" / "inferencex-1ef98e3ed"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--oracle", type=Path, help="jsonl written by `python -m tests.recipes.ix_oracle --out`")
    ap.add_argument("--framework", action="append", help="only these frameworks (repeatable)")
    ap.add_argument("--show", type=int, default=8, help="differences listed per framework")
    ap.add_argument("--json", type=Path, help="write every comparison here")
    args = ap.parse_args()
    if not FIXTURE.is_dir():
        print(f"needs the shared InferenceX fixture at {FIXTURE}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from infersweep.config.sweep import load_sweep
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand_jobs
    from infersweep.recipes.errors import RecipeError
    from infersweep.recipes.registry import build_recipe
    from tests.recipes.launch_compare import diff_launch  # type: ignore[import-not-found]

    sweep = load_sweep([FIXTURE / "nvidia-master.yaml", FIXTURE / "amd-master.yaml"])
    groups = {
        (g.config_key, g.isl, g.osl, g.tp, g.ep, g.dp_attn, g.pp, g.dcp_size, g.pcp_size, g.spec_decoding): g
        for g in group_jobs(expand_jobs(sweep, PlanFilters(single_node=True)))
    }
    records = [r for r in load_oracle(args.oracle) if not args.framework or r["framework"] in args.framework]
    totals: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    reasons: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    out: list[dict[str, Any]] = []
    for rec in records:
        fw = rec["framework"]
        totals[fw]["total"] += 1
        if rec.get("error"):
            totals[fw]["oracle failed"] += 1
            continue
        group = groups.get(tuple(rec[k] for k in TOPOLOGY))
        if group is None:
            totals[fw]["no serve group"] += 1
            continue
        try:
            recipe = build_recipe(group, sweep.quirks_for(group.model_prefix, group.model), served_model_name=None)
        except RecipeError as exc:
            totals[fw]["not built"] += 1
            reasons[fw][f"not built: {str(exc)[:100]}"] += 1
            continue
        diff = diff_launch(rec, {"argv": list(recipe.argv), "env": recipe.env, "files": recipe.files,
                                 "client": recipe.client.model_dump()})
        totals[fw]["identical" if not diff else "different"] += 1
        for d in diff:
            reasons[fw][d.split(":", 1)[0] if d.startswith(("flag ", "env ", "client ")) else d[:60]] += 1
        out.append({**{k: rec[k] for k in TOPOLOGY}, "framework": fw, "diff": diff})
    print(f"oracle: {len(records)} launches ({args.oracle or 'captured now'})")
    print(f"{'framework':<10} {'identical':>10} {'total':>6} {'%':>6}  other")
    for fw in sorted(totals):
        t = totals[fw]
        pct = 100.0 * t["identical"] / t["total"] if t["total"] else 0.0
        rest = ", ".join(f"{k} {v}" for k, v in sorted(t.items()) if k not in ("identical", "total") and v)
        print(f"{fw:<10} {t['identical']:>10} {t['total']:>6} {pct:>5.1f}%  {rest}")
    for fw in sorted(reasons):
        if reasons[fw]:
            print(f"\n{fw}: most common differences")
            for what, n in reasons[fw].most_common(args.show):
                print(f"  {n:>4} × {what}")
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
