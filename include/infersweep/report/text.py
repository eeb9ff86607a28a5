"""Plain-text tables for the terminal and task logs (no colour codes: logs are read in files too)."""

from __future__ import annotations

from collections.abc import Sequence

from infersweep.report.data import ReportPoint
from infersweep.report.gate import GateResult
from infersweep.report.metrics import metric
from infersweep.report.summary import COST_FORMULA, RunSummary, cost_frontiers, cost_sources


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


def _usd(v: float | None) -> str:
    # Cents matter at the cheap end ($0.05/Mtok); three significant digits are enough at the dear end.
    return "-" if v is None else (f"{v:.3f}" if v < 1 else f"{v:.2f}")


def _jpt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _with_interval(p: ReportPoint, metric: str, value: float | None) -> str:
    iv = p.interval(metric)
    if value is None or iv is None:
        return _val(value)
    return f"{value:.1f} [{iv[0]:.1f}, {iv[1]:.1f}]"


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
                 _val(p.e2el_s), _usd(p.usd_per_mtok_output), _jpt(p.joules_per_token)]
                for p in front if p.tput_per_gpu is not None]
        blocks.append(f"Pareto frontier: {model} {isl}/{osl}{sim}\n" + format_table(
            ["series", "conc", "tput/GPU", "tok/s/user", "TTFT ms", "E2EL s", "$/Mtok out", "J/tok"], rows))
    return "\n\n".join(blocks)


def cost_frontier_table(points: Sequence[ReportPoint]) -> str:
    """Per config key and ISL/OSL, each frontier point with throughput/GPU, interactivity (with their
    intervals when measured), $ per million output tokens and joules per output token; then where each
    runner's cost came from. Empty when no point succeeded."""
    groups = cost_frontiers(points)
    if not groups:
        return ""
    blocks = []
    for g in groups:
        sim = " [SIMULATED]" if g.simulated else ""
        rows = [[p.series_label, str(p.conc), _with_interval(p, "tput_per_gpu", p.tput_per_gpu),
                 _with_interval(p, "median_intvty", p.median_intvty), _usd(p.usd_per_mtok_output),
                 _jpt(p.joules_per_token)] for p in g.points]
        blocks.append(f"Frontier cost and energy: {g.config_key or g.model} {g.isl}/{g.osl}{sim}\n" + format_table(
            ["series", "conc", "tput/GPU", "tok/s/user", "$/Mtok out", "J/tok out"], rows))
    sources = cost_sources(points)
    if sources:
        listing = "; ".join(f"{runner} ${usd:g}/GPU-h ({src})" for runner, (usd, src) in sources.items())
        blocks.append(f"Cost per GPU-hour: {listing}.\n{COST_FORMULA}.")
    else:
        blocks.append("No cost per GPU-hour: set cost-per-gpu-hour on the inventory's nodes, or pass "
                      "--cost-per-gpu-hour RUNNER=USD.")
    return "\n\n".join(blocks)
