"""The human summary printed at the end of `make demo`: what ran, what it measured, where the report is."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from infersweep.airflow.settings import AirflowSettings
from infersweep.report.data import ReportPoint
from infersweep.report.pareto import pareto_front


def _fmt(value: float | None, spec: str = "{:.1f}") -> str:
    return spec.format(value) if value is not None else "-"


def points_table(points: list[ReportPoint]) -> list[str]:
    """One line per point, grouped by topology, with the frontier marked."""
    ok = [p for p in points if p.status == "ok"]
    front = {id(ok[i]) for i in pareto_front([p.median_intvty for p in ok], [p.tput_per_gpu for p in ok])}
    lines = [f"{'group':<28}{'conc':>6}{'tok/s/gpu':>12}{'TTFT p50 ms':>13}{'TPOT p50 ms':>13}{'tok/s/user':>12}  status"]
    by_topo: dict[str, list[ReportPoint]] = defaultdict(list)
    for p in points:
        layout = p.topology if p.pools else f"tp{p.tp} ep{p.ep}{' dep' if p.dp_attn else ''}"
        by_topo[f"{p.config_key[:14]} {layout}"].append(p)
    for topo, pts in sorted(by_topo.items()):
        for p in sorted(pts, key=lambda q: q.conc):
            mark = " *frontier*" if id(p) in front else ""
            status = p.status if p.status == "ok" else f"{p.status} ({p.failure_kind})"
            lines.append(f"{topo:<28}{p.conc:>6}{_fmt(p.tput_per_gpu):>12}{_fmt(p.median_ttft_ms):>13}"
                         f"{_fmt(p.median_tpot_ms, '{:.2f}'):>13}{_fmt(p.median_intvty):>12}  {status}{mark}")
    return lines


def render_demo_summary(run_ids: list[str], settings: AirflowSettings) -> str:
    """Summary of the demo's runs read back from the results store (so it shows what was stored)."""
    from infersweep.report.html import render_report
    from infersweep.report.service import write_atomic
    from infersweep.report.store_source import load_runs
    from infersweep.report.summary import summarize_runs
    from infersweep.store.db import get_engine
    from infersweep.store.views import failure_breakdown

    engine = get_engine(None)
    points = load_runs(engine, run_ids) if run_ids else []
    out = ["", "=" * 100, "infersweep demo summary", "=" * 100]
    for s in summarize_runs(points):
        out.append(f"{s.label}: {s.ratio} (engine {s.engine}, images {', '.join(s.images)})")
    out.extend(points_table(points))
    fails = [f for r in run_ids for f in failure_breakdown(engine, run_id=r)]
    if fails:
        out.append("failures by class: " + ", ".join(f"{f['failure_kind']}×{f['n']} ({f['source']})" for f in fails))
    report: Path = settings.work_dir / "reports" / "demo.html"
    # Rendered from the points already loaded for the table: one read of the store, not two.
    write_atomic(report, render_report(points, title="infersweep demo", subtitle=f"Runs {', '.join(run_ids)}."))
    out.append(f"HTML report (Pareto frontier: throughput/GPU vs tok/s/user): {report}")
    return "\n".join(out)
