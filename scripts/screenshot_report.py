"""Render an infersweep report in headless Chromium (Playwright, the system browser) and save a screenshot of its first pair of frontier charts.

    .venv/bin/python scripts/screenshot_report.py                       # the sample sweep → docs/img/report-frontier.png
    .venv/bin/python scripts/screenshot_report.py --db sqlite:///.infersweep/demo/results.sqlite --out shot.png

The sample sweep is synthetic (closed-form decode model, engine "sim"); the chart says SIMULATED.
Exits non-zero when the page logs a console error or the frontier is not drawn.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from infersweep.report.browser import png_info, render_page
from infersweep.report.html import render_report
from infersweep.report.sample import sample_points
from infersweep.report.service import load_points, write_atomic

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="results DB URL (default: the built-in sample sweep, no DB)")
    parser.add_argument("--run", action="append", default=[], help="dag_id/run_id or run id (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "report-frontier.png")
    parser.add_argument("--html", type=Path, help="also keep the rendered report here")
    parser.add_argument("--selector", default="#charts-0", help="element to capture ('' = full page)")
    parser.add_argument("--width", type=int, default=1500)
    args = parser.parse_args()

    if args.db:
        points, source = load_points(db_url=args.db, runs=args.run)
    else:
        points, source = sample_points(), "Synthetic sample sweep (simulated engine)."
    html_path = args.html or Path(tempfile.mkdtemp(prefix="infersweep-shot-")) / "report.html"
    write_atomic(html_path, render_report(points, title="infersweep report", subtitle=source))
    result = render_page(html_path, width=args.width, height=1100, clip_selector=args.selector or None,
                         full_page=not args.selector)
    if result.console_errors:
        print("console errors:\n  " + "\n  ".join(result.console_errors), file=sys.stderr)
        return 1
    if not result.plots_ready or not any(chart["frontier"] for chart in result.probe or []):
        print("the Pareto frontier was not drawn", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(result.png)
    width, height, _ = png_info(result.png)
    print(f"{args.out} ({width}x{height}, {len(result.png)} bytes) from {html_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
