"""How long reports and the regression gate take at fleet size.

    .venv/bin/python perf/report_build.py [--configs 160] [--repeat 3]

Builds a synthetic fleet: `--configs` sweep DAGs, each with the sample sweep's 5 series × 7 concurrencies
× 2 sequence lengths (70 points), stores two runs of every DAG in a SQLite results store, then times:
the Pareto frontier alone (100k points), loading the newest run of each DAG from the store, rendering
the HTML, and comparing + gating the two runs (history lookup included). Prints best-of-N wall times.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infersweep.report.compare import compare
from infersweep.report.gate import group_history, run_gate
from infersweep.report.html import render_report
from infersweep.report.pareto import pareto_front
from infersweep.report.sample import sample_points
from infersweep.report.store_source import load_history, load_latest, load_selector
from infersweep.store.db import make_engine, write_transaction
from infersweep.store.models import Base
from infersweep.store.records import apply_benchmark, apply_group, apply_run


def best_of(n: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def seed(url: str, configs: int) -> int:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    rows = 0
    with write_transaction(engine) as conn:
        for c in range(configs):
            for day, (run, image, speed) in enumerate((("night1", "img:1", 1.0), ("night2", "img:2", 0.99))):
                started = datetime(2026, 11, 26 + day, 2, tzinfo=UTC)
                points = sample_points(dag_id=f"cfg{c:03d}", run_id=run, image=image, speedup=speed)
                apply_run(
                    conn,
                    {
                        "dag_id": f"cfg{c:03d}",
                        "run_id": run,
                        "trigger_kind": "scheduled",
                        "started_at": started,
                        "image_tag": image,
                        "engine": "sim",
                    },
                )
                for p in points:
                    gid = f"{p.config_key}-{p.topology}-{p.spec_label}-{p.isl}"
                    apply_group(
                        conn,
                        {
                            "dag_id": p.dag_id,
                            "run_id": run,
                            "group_id": gid,
                            "config_key": f"cfg{c:03d}-{p.config_key}",
                            "model": f"{p.model}-{c % 16}",
                            "runner": p.runner,
                            "framework": p.framework,
                            "precision": p.precision,
                            "tp": p.tp,
                            "ep": p.ep,
                            "spec_decoding": p.spec_decoding,
                            "isl": p.isl,
                            "osl": p.osl,
                            "image": image,
                            "engine": "sim",
                            "recipe_fingerprint": p.recipe_fingerprint,
                        },
                    )
                    data = p.model_dump(
                        include={
                            "isl",
                            "osl",
                            "conc",
                            "status",
                            "failure_kind",
                            "tput_per_gpu",
                            "median_intvty",
                            "median_ttft_ms",
                            "median_e2el_ms",
                            "median_tpot_ms",
                            "output_tput_per_gpu",
                        }
                    )
                    apply_benchmark(
                        conn,
                        {"dag_id": p.dag_id, "run_id": run, "group_id": gid, "measured_at": started, **data},
                    )
                    rows += 1
    engine.dispose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", type=int, default=160)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = random.Random(1)
    xs = [rng.random() for _ in range(100_000)]
    ys = [rng.random() for _ in range(100_000)]
    t, front = best_of(args.repeat, lambda: pareto_front(xs, ys))
    print(f"pareto_front       {t * 1000:8.1f} ms   (100,000 random points, {len(front)} on the frontier)")

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'results.sqlite'}"
        t0 = time.perf_counter()
        rows = seed(url, args.configs)
        print(
            f"seed store         {(time.perf_counter() - t0):8.1f} s    ({rows} result rows, {args.configs} DAGs × 2 runs)"
        )
        engine = make_engine(url)
        t, points = best_of(args.repeat, lambda: load_latest(engine))
        print(f"load newest runs   {t * 1000:8.1f} ms   ({len(points)} points)")
        t, html = best_of(args.repeat, lambda: render_report(points))
        charts = html.count("Plotly.newPlot(")
        print(
            f"render HTML        {t * 1000:8.1f} ms   ({charts} charts, {len(html) / 1e6:.1f} MB with plotly.js inlined)"
        )

        def load_sides() -> Any:
            base, head = load_selector(engine, "night1"), load_selector(engine, "night2")
            exclude = {(p.dag_id, p.run_id) for p in (*base, *head)}
            return base, head, group_history(load_history(engine, head, exclude=exclude))

        t, (base, head, history) = best_of(args.repeat, load_sides)
        print(f"load both + history{t * 1000:8.1f} ms   ({len(base)} + {len(head)} points)")
        t, result = best_of(args.repeat, lambda: run_gate(compare(base, head), history=history))
        print(
            f"compare + gate     {t * 1000:8.1f} ms   ({len(result.rows)} points, {len(result.regressions)} regressions)"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
