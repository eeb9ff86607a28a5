"""Self-contained HTML reports (plotly.js inlined: the file opens offline, with no CDN).

`render_report` draws, per (engine kind, model, isl/osl): throughput/GPU vs interactivity and vs E2E
latency with their Pareto frontiers (shaded bands where the frontier points have confidence intervals),
per config key the frontier points with their $ per million output tokens and joules per output token,
then a table of every point including failures and their class.
A run summary ("53/55 green" and failures by class) heads the page. Simulated-engine results are in
their own sections with a visible SIMULATED label; they never share a chart with real measurements.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from infersweep.report.charts import (
    E2E_LATENCY,
    INTERACTIVITY,
    Figure,
    frontier_points,
    overlay_chart,
    throughput_chart,
)
from infersweep.report.data import ReportPoint
from infersweep.report.metrics import metric
from infersweep.report.summary import (
    COST_FORMULA,
    FrontierGroup,
    RunSummary,
    cost_frontiers,
    cost_sources,
    failure_breakdown,
    summarize_runs,
)

if TYPE_CHECKING:
    from infersweep.report.compare import Comparison
    from infersweep.report.gate import GateResult

#: `inline` embeds plotly.js (default: offline, self-contained); any other value is a script URL
#: (the Airflow plugin serves plotly.js once and lets the browser cache it).
INLINE = "inline"

# Fixed grid columns (not auto-fit): each chart's script runs before the next chart's <div> exists, so
# an auto-fit grid would size the first chart for a one-column layout and then squeeze it.
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px} .muted{color:#666;font-size:13px}
.sim{display:inline-block;background:#fff3cd;color:#7a5b00;border:1px solid #e0c36a;border-radius:4px;
     padding:1px 6px;font-size:12px;font-weight:600;margin-left:6px;vertical-align:middle}
.charts{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:12px}
@media (max-width:1100px){.charts{grid-template-columns:minmax(0,1fr)}}
table{border-collapse:collapse;font-size:12px;margin:6px 0 12px} th,td{border:1px solid #e3e3e3;padding:3px 6px;text-align:right}
th{background:#f6f6f6;position:sticky;top:0} td.l,th.l{text-align:left}
tr.failed td{background:#fdecea} tr.regression td{background:#fdecea} tr.improvement td{background:#e8f5e9}
tr.new td,tr.missing td{background:#f3f3f3} .ok{color:#1b7a2f;font-weight:600} .bad{color:#b3261e;font-weight:600}
details{margin:6px 0} summary{cursor:pointer;color:#333}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "" if value is None else fmt.format(value)


def plotly_script(plotly_js: str = INLINE) -> str:
    """The `<script>` that loads plotly.js: inlined, from a URL, or nothing (empty string: no charts)."""
    if not plotly_js:
        return ""
    if plotly_js == INLINE:
        from plotly.offline import get_plotlyjs

        # A literal "</script>" inside the bundle would end the tag early; plotly's bundle has none, but
        # escaping the sequence keeps that true for any future bundle.
        return '<script type="text/javascript">' + get_plotlyjs().replace("</script", "<\\/script") + "</script>"
    return f'<script type="text/javascript" src="{_e(plotly_js)}"></script>'


PLOT_CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "png", "scale": 2}}


def _script_json(value: object) -> str:
    # JSON inside <script>: "</" would let data close the tag, so it is escaped (valid JSON either way).
    return orjson.dumps(value).decode().replace("</", "<\\/")


def figure_div(fig: Figure, div_id: str) -> str:
    """A figure as a `<div>` + inline `Plotly.newPlot` call (plotly.js is loaded once by the page)."""
    height = fig.get("layout", {}).get("height", 460)
    return (
        f'<div id="{_e(div_id)}" class="plotly-graph-div" style="height:{int(height)}px;width:100%;"></div>'
        f'<script type="text/javascript">Plotly.newPlot("{_e(div_id)}", {_script_json(fig["data"])}, '
        f"{_script_json(fig['layout'])}, {_script_json(PLOT_CONFIG)});</script>"
    )


def page(title: str, body: str, *, plotly_js: str = INLINE) -> str:
    """A complete HTML document."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_e(title)}</title>"
        f"<style>{CSS}</style>{plotly_script(plotly_js)}</head><body>\n{body}\n</body></html>\n"
    )


def _group_points(points: Iterable[ReportPoint]) -> dict[tuple[str, str, int, int], list[ReportPoint]]:
    groups: dict[tuple[str, str, int, int], list[ReportPoint]] = defaultdict(list)
    for p in points:
        groups[p.chart_group].append(p)
    # Real measurements first, then simulated; then model and sequence lengths.
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][0] != "real", kv[0][1], kv[0][2], kv[0][3])))


def _group_title(key: tuple[str, str, int, int]) -> str:
    kind, model, isl, osl = key
    sim = ' <span class="sim">SIMULATED ENGINE — not a hardware measurement</span>' if kind == "sim" else ""
    return f"{_e(model)} · ISL {isl} / OSL {osl}{sim}"


def summary_table(summaries: Sequence[RunSummary], *, link: Callable[[RunSummary], str] | None = None) -> str:
    """The run summary: one row per run, points green/total and failures by class (`link`: run → URL)."""
    rows = []
    for s in summaries:
        label = f'<a href="{_e(link(s))}">{_e(s.label)}</a>' if link else _e(s.label)
        fails = ", ".join(f"{_e(k)}: {n}" for k, n in s.failures.items()) or "—"
        cls = "ok" if s.green == s.total else "bad"
        evals = f"{s.evals_passed}/{s.evals_total}" if s.evals_total else "—"
        sim = ' <span class="sim">SIM</span>' if s.simulated else ""
        skipped = "; ".join(f"{_e(k)}: {n} planned, not executed" for k, n in s.not_executed.items()) or "—"
        rows.append(
            f"<tr><td class=\"l\">{label}</td><td class=\"l\">{_e(s.engine)}{sim}</td>"
            f"<td class=\"l\">{_e(', '.join(s.images))}</td>"
            f"<td class=\"l\">{_e(s.started_at.strftime('%Y-%m-%d %H:%M UTC') if s.started_at else '')}</td>"
            f"<td class=\"{cls}\">{s.ratio}</td><td>{evals}</td><td class=\"l\">{fails}</td>"
            f"<td class=\"l not-executed\">{skipped}</td></tr>"
        )
    return (
        '<table id="run-summary"><thead><tr><th class="l">run</th><th class="l">engine</th><th class="l">image</th>'
        '<th class="l">started</th><th>points</th><th>evals passed</th><th class="l">failures by class</th>'
        '<th class="l">not executed</th></tr></thead><tbody>'
        + "".join(rows) + "</tbody></table>"
    )


POINT_COLUMNS = (
    ("tput_per_gpu", "tput/GPU"), ("output_tput_per_gpu", "out tput/GPU"), ("median_intvty", "intvty"),
    ("median_ttft_ms", "TTFT p50 ms"), ("p99_ttft_ms", "TTFT p99 ms"), ("median_tpot_ms", "TPOT p50 ms"),
    ("median_e2el_ms", "E2EL p50 ms"),
)


def points_table(points: Sequence[ReportPoint], table_id: str) -> str:
    """Every point of a group, failures included with their class; frontier members are starred."""
    on_front = {id(p) for p in frontier_points(points, INTERACTIVITY)}
    head = "".join(f"<th>{_e(label)}</th>" for _, label in POINT_COLUMNS)
    rows = []
    for p in sorted(points, key=lambda p: (p.series_label, p.conc, p.run_label)):
        cls = "failed" if p.status != "ok" else ""
        metrics = "".join(f"<td>{_num(getattr(p, name))}</td>" for name, _ in POINT_COLUMNS)
        status = "ok" if p.status == "ok" else f"failed: {p.failure_kind or 'unknown'}"
        err = f' title="{_e((p.error or "")[:500])}"' if p.error else ""
        flags = ("★ frontier " if id(p) in on_front else "") + ("client-bound" if p.client_bound else "")
        rows.append(
            f'<tr class="{cls}"><td class="l"{err}>{_e(status)}</td><td class="l">{_e(p.config_key)}</td>'
            f'<td class="l">{_e(p.series_label)}</td><td>{p.conc}</td>{metrics}'
            f'<td class="l">{_e(flags.strip())}</td><td class="l">{_e(p.image)}</td>'
            f'<td class="l">{_e(p.fingerprint_prefix)}</td><td class="l">{_e(p.run_label)}</td></tr>'
        )
    return (
        f'<table id="{_e(table_id)}" class="points"><thead><tr><th class="l">status</th><th class="l">config key</th>'
        f'<th class="l">series</th><th>conc</th>{head}<th class="l">flags</th><th class="l">image</th>'
        '<th class="l">recipe</th><th class="l">run</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
    )


def _with_interval(p: ReportPoint, metric: str, value: float | None) -> str:
    iv = p.interval(metric)
    if value is None or iv is None:
        return _num(value)
    level = p.intervals[metric].get("level")
    what = f"{float(level) * 100:g}% interval" if isinstance(level, int | float) else "interval"
    return (f'{_num(value)} <span class="muted" title="{_e(what)}, {_e(p.intervals[metric].get("method") or "")}">'
            f"[{_num(iv[0])}, {_num(iv[1])}]</span>")


def frontier_cost_table(group: FrontierGroup, table_id: str) -> str:
    """One config key's frontier at one ISL/OSL: throughput/GPU and interactivity (with their intervals),
    $ per million output tokens (and the cost behind it) and joules per output token, per frontier point."""
    rows = []
    for p in group.points:
        usd = p.usd_per_mtok_output
        cost = (f' title="${p.cost_per_gpu_hour:g}/GPU-h from {_e(p.cost_source or "inventory")}"'
                if p.cost_per_gpu_hour is not None else "")
        rows.append(
            f'<tr><td class="l">{_e(p.series_label)}</td><td>{p.conc}</td>'
            f"<td>{_with_interval(p, 'tput_per_gpu', p.tput_per_gpu)}</td>"
            f"<td>{_num(p.output_tput_per_gpu)}</td>"
            f"<td>{_with_interval(p, 'median_intvty', p.median_intvty)}</td>"
            f'<td class="usd"{cost}>{_num(usd, "{:.3f}")}</td>'
            f'<td class="jpt">{_num(p.joules_per_token, "{:.3g}")}</td><td class="l">{_e(p.run_label)}</td></tr>'
        )
    return (
        f'<table id="{_e(table_id)}" class="frontier-cost"><thead><tr><th class="l">series</th><th>conc</th>'
        "<th>tput/GPU</th><th>out tput/GPU</th><th>tok/s/user</th><th>$/Mtok out</th><th>J/tok out</th>"
        '<th class="l">run</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
    )


def cost_note(points: Sequence[ReportPoint]) -> str:
    """One paragraph: each runner's cost per GPU-hour and its source, and how $/Mtok is computed."""
    sources = cost_sources(points)
    if not sources:
        return ('<p class="muted" id="cost-sources">No cost per GPU-hour: set <code>cost-per-gpu-hour</code> on the '
                "inventory's nodes, or pass <code>--cost-per-gpu-hour RUNNER=USD</code>, to see $/Mtok.</p>")
    listing = "; ".join(f"{_e(runner)}: ${usd:g}/GPU-h ({_e(src)})" for runner, (usd, src) in sources.items())
    return f'<p class="muted" id="cost-sources">Cost per GPU-hour: {listing}. {_e(COST_FORMULA)}.</p>'


def render_report(
    points: Sequence[ReportPoint], *, title: str = "infersweep report", subtitle: str = "",
    plotly_js: str = INLINE, generated_at: datetime | None = None, header_html: str = "",
    summaries: Sequence[RunSummary] | None = None,
) -> str:
    """The full report page for a set of points (any number of runs, models and sequence lengths).

    `header_html` is inserted verbatim under the title (callers escape it; the plugin adds navigation).
    `summaries` (from the store's views, which also count planned points that never ran) replace the
    run summary computed from the points themselves.
    """
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    if summaries is None:
        summaries = summarize_runs(points)
    green = sum(p.status == "ok" for p in points)
    # The store's totals include planned points that never produced a row (e.g. a server that never booted).
    total = max(len(points), sum(s.total for s in summaries))
    fails = failure_breakdown(points)
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{_e(subtitle)} Generated {when}. {green}/{total} points green'
        + (f"; failures: {_e(', '.join(f'{k} ×{n}' for k, n in fails.items()))}" if fails else "") + ".</p>",
        header_html,
        "<h2>Runs</h2>",
        summary_table(summaries),
    ]
    if not points:
        parts.append("<p><b>No results match this selection.</b></p>")
    else:
        parts.append(cost_note(points))
    for i, (key, pts) in enumerate(_group_points(points).items()):
        ok = [p for p in pts if p.ok]
        parts.append(f'<h2 id="group-{i}">{_group_title(key)}</h2>')
        parts.append(f'<p class="muted">{len(ok)}/{len(pts)} points green. Hover a point for its config key, '
                     "image, recipe fingerprint and concurrency. ★ = on the Pareto frontier.</p>")
        if ok:
            _kind, _model, isl, osl = key
            # Charts of simulated results carry a SIMULATED watermark (see charts.SIM_WATERMARK).
            f1 = throughput_chart(pts, INTERACTIVITY, title=f"Throughput/GPU vs interactivity · {isl}/{osl}")
            f2 = throughput_chart(pts, E2E_LATENCY, title=f"Throughput/GPU vs E2E latency · {isl}/{osl}")
            parts.append(f'<div class="charts" id="charts-{i}">' + figure_div(f1, f"chart-{i}-intvty")
                         + figure_div(f2, f"chart-{i}-e2el") + "</div>")
            for j, group in enumerate(cost_frontiers(pts)):
                parts.append(f"<h3>Frontier of {_e(group.config_key or group.model)}: cost and energy per output "
                             f"token</h3>" + frontier_cost_table(group, f"frontier-cost-{i}-{j}"))
        parts.append(f"<h3>All points ({len(pts)})</h3>" + points_table(pts, f"points-{i}"))
    return page(title, "\n".join(parts), plotly_js=plotly_js)


def _fmt_delta(rel: float | None) -> str:
    return "" if rel is None else f"{rel * 100:+.1f}%"


def gate_table_html(result: GateResult) -> str:
    """The per-point deltas table (HTML) with verdicts and noise bands."""
    heads = "".join(f"<th>{_e(metric(m).label)} base → head</th><th>Δ</th><th>band</th>" for m in result.metrics)
    rows = []
    for r in result.rows:
        cells = []
        by_metric = {d.metric: d for d in r.deltas}
        for m in result.metrics:
            d = by_metric.get(m)
            if d is None:
                cells.append("<td></td><td></td><td></td>")
                continue
            cls = {"regression": "bad", "improvement": "ok"}.get(d.verdict, "")
            cells.append(
                f"<td>{_num(d.base)} → {_num(d.head)}</td><td class=\"{cls}\">{_fmt_delta(d.rel)}</td>"
                f"<td title=\"{_e(d.band.describe())}\">±{d.band.rel * 100:.0f}% {_e(d.band.source)}</td>"
            )
        rows.append(
            f'<tr class="{_e(r.verdict)}"><td class="l">{_e(r.label)}</td><td class="l">{_e(r.verdict)}</td>'
            + "".join(cells) + f'<td class="l">{_e(r.note)}</td></tr>'
        )
    return (
        f'<table id="gate"><thead><tr><th class="l">point</th><th class="l">verdict</th>{heads}'
        '<th class="l">note</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
    )


def render_compare(comparison: Comparison, result: GateResult, *, plotly_js: str = INLINE,
                   title: str | None = None) -> str:
    """The compare page: frontier overlays per group and the per-point deltas table."""
    title = title or f"infersweep compare: {comparison.head_label} vs {comparison.base_label}"
    groups: dict[tuple[str, str, int, int], dict[str, list[ReportPoint]]] = defaultdict(
        lambda: {"base": [], "head": []}
    )
    for pair in comparison.pairs:
        groups[pair.any.chart_group]["base"].extend(pair.base)
        groups[pair.any.chart_group]["head"].extend(pair.head)
    cls = "ok" if result.exit_code == 0 else "bad"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="{cls}">{_e(result.summary())}</p>',
        '<p class="muted">A point regresses when a gated metric moves the wrong way by more than its noise band '
        "(from repeats, else history, never below the floor). Throughput drops and latency rises are bad.</p>",
    ]
    for i, (key, sides) in enumerate(sorted(groups.items(), key=lambda kv: (kv[0][0] != "real", kv[0]))):
        parts.append(f'<h2 id="group-{i}">{_group_title(key)}</h2>')
        _kind, _model, isl, osl = key
        figs: list[Any] = [
            overlay_chart(sides["base"], sides["head"], axis, base_label=comparison.base_label,
                          head_label=comparison.head_label, title=f"{name} · {isl}/{osl}")
            for axis, name in ((INTERACTIVITY, "Throughput/GPU vs interactivity"),
                               (E2E_LATENCY, "Throughput/GPU vs E2E latency"))
        ]
        parts.append(f'<div class="charts" id="charts-{i}">' + figure_div(figs[0], f"overlay-{i}-intvty")
                     + figure_div(figs[1], f"overlay-{i}-e2el") + "</div>")
    parts.append("<h2>Per-point deltas</h2>" + gate_table_html(result))
    return page(title, "\n".join(parts), plotly_js=plotly_js)
