"""Plain-text tables for the terminal and task logs (no colour codes: logs are read in files too)."""

from __future__ import annotations

from collections.abc import Sequence

from infersweep.report.data import ReportPoint
from infersweep.report.gate import GateResult
from infersweep.report.metrics import metric
from infersweep.report.summary import RunSummary


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces, with a dashed rule under the header."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
    return "\n".join(lines)


def _val(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def gate_table(result: GateResult, *, only_changes: bool = False) -> str:
    """The per-point deltas table: `base → head (Δ%)` per gated metric, the band and the verdict."""
    header = ["verdict", "point", *(metric(m).label for m in result.metrics), "band", "note"]
    rows = []
    for r in result.rows:
        if only_changes and r.verdict in {"ok", "no-data"}:
            continue
        by_metric = {d.metric: d for d in r.deltas}
        cells = []
        for m in result.metrics:
            d = by_metric.get(m)
            if d is None:
                cells.append("")
                continue
            mark = "!" if d.verdict == "regression" else ""
            rel = "" if d.rel is None else f" ({d.rel * 100:+.1f}%{mark})"
            cells.append(f"{_val(d.base)}→{_val(d.head)}{rel}")
        band = r.deltas[0].band.describe() if r.deltas else ""
        verdict = r.verdict.upper() if r.verdict in {"regression", "failed"} else r.verdict
        rows.append([verdict, r.label, *cells, band, r.note])
    return format_table(header, rows) + "\n" + result.summary()


def summary_table(summaries: Sequence[RunSummary]) -> str:
    """Run summaries: run, engine, image, points green/total, failures by class."""
    rows = [
        [s.label, s.engine + (" (SIMULATED)" if s.simulated else ""), ", ".join(s.images) or "-", s.ratio,
         ", ".join(f"{k}: {n}" for k, n in s.failures.items()) or "-"]
        for s in summaries
    ]
    return format_table(["run", "engine", "image", "points", "failures"], rows)


def frontier_table(points: Sequence[ReportPoint]) -> str:
    """Per model and ISL/OSL, the Pareto-frontier points (throughput/GPU vs interactivity) as text."""
    from infersweep.report.charts import INTERACTIVITY, frontier_points

    groups: dict[tuple[str, str, int, int], list[ReportPoint]] = {}
    for p in points:
        groups.setdefault(p.chart_group, []).append(p)
    blocks = []
    for (kind, model, isl, osl), pts in sorted(groups.items()):
        front = frontier_points(pts, INTERACTIVITY)
        sim = " [SIMULATED]" if kind == "sim" else ""
        rows = [[p.series_label, str(p.conc), f"{p.tput_per_gpu:.1f}", _val(p.median_intvty), _val(p.median_ttft_ms),
                 _val(p.e2el_s)] for p in front if p.tput_per_gpu is not None]
        blocks.append(f"Pareto frontier: {model} {isl}/{osl}{sim}\n" + format_table(
            ["series", "conc", "tput/GPU", "tok/s/user", "TTFT ms", "E2EL s"], rows))
    return "\n\n".join(blocks)
