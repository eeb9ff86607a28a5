"""DAG parse time at fleet size: the two InferenceX master files → one DAG per single-node config key.

Usage: .venv/bin/python perf/dag_parse.py [--repeat N] [--configs PATHS]
Prints the DagBag parse time (what the dag-processor pays per parse cycle), the DAG/task counts and the
import errors (must be 0). The goal is under 2 s in total for the 160 single-node DAGs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "fixtures" / "inferencex"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--configs", default=f"{SHARED / 'nvidia-master.yaml'}:{SHARED / 'amd-master.yaml'}")
    args = ap.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="dagparse-"))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["INFERSWEEP_CONFIGS"] = args.configs
    t = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag

    import_s = time.perf_counter() - t
    times, bag = [], None
    for _ in range(args.repeat):
        t = time.perf_counter()
        bag = DagBag(dag_folder=str(ROOT / "dags"))
        times.append(time.perf_counter() - t)
    assert bag is not None
    sweeps = [d for d in bag.dags if d != "infersweep_report"]
    tasks = sum(len(d.task_dict) for d in bag.dags.values())
    print(f"configs: {args.configs}")
    print(f"airflow import: {import_s:.2f} s (once per process, not per parse)")
    print(f"DagBag parse of dags/ ({args.repeat} runs): median {statistics.median(times):.3f} s, "
          f"min {min(times):.3f} s, max {max(times):.3f} s")
    print("  each run: " + ", ".join(f"{t:.2f}" for t in times) + " s (the first includes lazy imports)")
    print(f"sweep DAGs: {len(sweeps)}, tasks in all DAGs: {tasks}, import errors: {len(bag.import_errors)}")
    for path, err in bag.import_errors.items():
        print(f"  {path}: {err[-500:]}")
    return 1 if bag.import_errors else 0


if __name__ == "__main__":
    sys.exit(main())
