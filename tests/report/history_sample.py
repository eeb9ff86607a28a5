"""A sample history of one config key: 7 nightly runs over 3 images, one of them a backfill run days later.

Built from the synthetic sample sweep (simulated engine), so its numbers are labelled SIMULATED wherever they
are shown. Used by the history tests, and to make the docs' sample output and screenshot:

    .venv/bin/python -m tests.report.history_sample sqlite:////tmp/history.sqlite [--screenshot docs/img/history.png]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from infersweep.report.data import ReportPoint
from infersweep.report.history import HistoryRun
from infersweep.report.sample import sample_points
from infersweep.store.db import write_transaction
from infersweep.store.records import apply_run

from .seed import seed, store_engine

CONFIG_KEY = "llama70b-fp8-h200-vllm"
V10, V11, V12 = "vllm/vllm-openai:v0.10.0", "vllm/vllm-openai:v0.11.0", "vllm/vllm-openai:v0.12.0"


def _night(day: int) -> datetime:
    return datetime(2026, 11, day, 2, 0, tzinfo=UTC)


#: (run id, logical date, started at, trigger kind, image, speedup of the simulated engine)
NIGHTS = (
    ("scheduled__2026-11-20T02:00:00+00:00", _night(20), _night(20), "scheduled", V10, 1.00),
    ("scheduled__2026-11-21T02:00:00+00:00", _night(21), _night(21), "scheduled", V10, 1.005),
    # Backfilled on the 26th for the night of the 22nd: it must sit between the 21st and the 23rd.
    ("backfill__2026-11-22T02:00:00+00:00", _night(22), _night(26) + timedelta(hours=9), "backfill", V10, 0.998),
    ("scheduled__2026-11-23T02:00:00+00:00", _night(23), _night(23), "scheduled", V11, 1.03),
    ("scheduled__2026-11-24T02:00:00+00:00", _night(24), _night(24), "scheduled", V11, 1.025),
    # v0.12.0 is 8-10 % slower: the regression the history has to show.
    ("scheduled__2026-11-25T02:00:00+00:00", _night(25), _night(25), "scheduled", V12, 0.92),
    ("scheduled__2026-11-26T02:00:00+00:00", _night(26), _night(26), "scheduled", V12, 0.925),
)


def history_sample(config_key: str = CONFIG_KEY) -> tuple[list[ReportPoint], list[HistoryRun]]:
    """The sample's points (the config key's series only, ISL/OSL 1024/1024) and its runs."""
    points: list[ReportPoint] = []
    runs: list[HistoryRun] = []
    for run_id, logical, started, kind, image, speedup in NIGHTS:
        for p in sample_points(run_id=run_id, dag_id=config_key, image=image, seq_lens=((1024, 1024),),
                               speedup=speedup):
            if p.config_key == config_key:
                points.append(p.model_copy(update={"run_started_at": started, "measured_at": started}))
        runs.append(HistoryRun(dag_id=config_key, run_id=run_id, image=image, logical_date=logical,
                               started_at=started, trigger_kind=kind))
    return points, runs


def seed_history(engine: Engine, config_key: str = CONFIG_KEY) -> tuple[list[ReportPoint], list[HistoryRun]]:
    """Write the sample into a store, with each run's logical date and trigger kind; returns what it wrote."""
    points, runs = history_sample(config_key)
    seed(engine, points)
    with write_transaction(engine) as conn:
        for r in runs:
            apply_run(conn, {"dag_id": r.dag_id, "run_id": r.run_id, "trigger_kind": r.trigger_kind,
                             "logical_date": r.logical_date, "started_at": r.started_at})
    return points, runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db", help="SQLite URL of a new store to create, e.g. sqlite:////tmp/history.sqlite")
    parser.add_argument("--screenshot", type=Path, help="also render the history page and save this PNG")
    args = parser.parse_args()
    seed_history(store_engine(args.db))
    print(f"seeded {len(NIGHTS)} runs of {CONFIG_KEY} into {args.db}")
    if args.screenshot:
        from infersweep.report.browser import png_info, render_page
        from infersweep.report.history import build_history, load_history_input
        from infersweep.report.history_html import render_history
        from infersweep.store.db import get_engine

        points, runs = load_history_input(get_engine(args.db), CONFIG_KEY)
        page = Path(tempfile.mkdtemp(prefix="infersweep-history-")) / "history.html"
        page.write_text(render_history(build_history(points, config_key=CONFIG_KEY, runs=runs)))
        result = render_page(page, width=1500, height=1000, clip_selector="#history-charts-2")
        if result.console_errors or not result.plots_ready:
            print(f"page did not render cleanly: {result.console_errors}", file=sys.stderr)
            return 1
        args.screenshot.write_bytes(result.png)
        width, height, _ = png_info(result.png)
        print(f"{args.screenshot} ({width}x{height}, {len(result.png)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
