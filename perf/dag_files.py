"""Parse time per generated DAG file, at today's fleet and at 10x (2,000 config keys).

Usage: .venv/bin/python perf/dag_files.py [--scale 10] [--repeat 3]

Builds the fleet from the shared InferenceX snapshot (843c6254f, 208 config keys): scale 1 is the two master
files as they are; scale N copies every entry N times under new keys (`<key>-x<i>`) into one pair of master
files, the worst case for a single source. Then, like the dag-processor: sync the generated DAG files, and
parse each file on its own (a DagBag per file, in a process that has imported Airflow already), once with
a cold parse cache (the first parse after a config change) and `--repeat` times warm. Prints per-file
times (max, median), the DAG count, import errors (must be 0), and, for reference, the time to build every
DAG in one file as before.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT.parent / "shared" / "fixtures" / "inferencex-843c6254f"


class _NoAliases(yaml.CSafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def build_fleet(out: Path, scale: int) -> list[Path]:
    """The snapshot's master files with every entry copied `scale` times (runners.yaml beside them)."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(SNAPSHOT / "runners.yaml", out / "runners.yaml")
    paths = []
    for name in ("nvidia-master.yaml", "amd-master.yaml"):
        if scale == 1:
            shutil.copy2(SNAPSHOT / name, out / name)
        else:
            data = yaml.load((SNAPSHOT / name).read_text(), Loader=yaml.CSafeLoader)
            big = {f"{k}-x{i}": v for i in range(scale) for k, v in data.items()}
            # No anchors: every copy written out in full, as a 10x fleet's files would be.
            (out / name).write_text(yaml.dump(big, Dumper=_NoAliases, sort_keys=False))
        paths.append(out / name)
    return paths


def parse_each(files: list[Path]) -> tuple[list[float], int, dict[str, Any]]:
    from airflow.dag_processing.dagbag import DagBag

    times, dags, errors = [], 0, {}
    for f in files:
        t = time.perf_counter()
        bag = DagBag(dag_folder=str(f))
        times.append(time.perf_counter() - t)
        dags += len(bag.dags)
        errors.update(bag.import_errors)
    return times, dags, errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not SNAPSHOT.is_dir():
        print(f"needs the shared InferenceX snapshot at {SNAPSHOT}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="dagfiles-"))
    try:
        return run(tmp, args.scale, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path, scale: int, repeat: int) -> int:
    configs = build_fleet(tmp / "fleet", scale)
    os.environ.update({
        "AIRFLOW_HOME": str(tmp / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "INFERSWEEP_CONFIGS": ":".join(map(str, configs)), "INFERSWEEP_WORK_DIR": str(tmp / "work"),
    })
    import airflow  # noqa: F401 - imported once per dag-processor process, not per parse

    from infersweep.airflow.dagfiles import SUBDIR, sync_dag_files
    from infersweep.airflow.settings import AirflowSettings
    from infersweep.config.sweep import load_sweep

    keys = len(load_sweep(configs).entries)
    dags_folder = tmp / "dags"
    t = time.perf_counter()
    report = sync_dag_files(dags_folder, settings=AirflowSettings.from_env())
    sync_cold = time.perf_counter() - t
    files = sorted((dags_folder / SUBDIR).glob("*.py"))
    shutil.rmtree(tmp / "work" / "parse-cache", ignore_errors=True)
    cold, n_dags, errors = parse_each(files)  # each file loads its source itself: no cache yet
    warm: list[float] = []
    for _ in range(repeat):
        times, _, _ = parse_each(files)
        warm.extend(times)
    t = time.perf_counter()
    sync_dag_files(dags_folder, settings=AirflowSettings.from_env())
    sync_warm = time.perf_counter() - t

    print(f"fleet: scale {scale}: {keys} config keys in {len(configs)} master files ({tmp / 'fleet'})")
    print(f"generated DAG files: {len(files)} ({len(report.written)} written), sweep DAGs: {n_dags}, "
          f"import errors: {len(errors)}")
    print(f"sync (the report DAG file's parse adds this): cold {sync_cold:.2f} s, warm {sync_warm:.2f} s")
    print(f"per file, cold parse cache: max {max(cold):.2f} s, median {statistics.median(cold):.2f} s")
    print(f"per file, warm ({repeat} rounds): max {max(warm):.2f} s, median {statistics.median(warm):.2f} s")
    print(f"all files one after another (one core), warm: {sum(warm) / repeat:.2f} s")
    for path, err in list(errors.items())[:3]:
        print(f"  {path}: {err[-400:]}")

    # Reference: every DAG built in one file, as before the split (warm cache).
    from infersweep.airflow.factory import build_sweep_dag
    from infersweep.airflow.parse_cache import load_dag_specs

    settings = AirflowSettings.from_env()
    t = time.perf_counter()
    specs = [s for c in configs for s in load_dag_specs([c], settings.parse_cache_dir)]
    for s in specs:
        build_sweep_dag(s, settings)
    print(f"reference, all {len(specs)} DAGs built in one process (the old single DAG file): "
          f"{time.perf_counter() - t:.2f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
