"""The history page: per topology, throughput/GPU at fixed interactivity levels over time (noise band shaded,
regressions ringed) and the frontiers of every run overlaid, coloured by date; then the table.

Built with the report's conventions (`report.html` page, figure divs and CSS; `report.charts` layout, grid,
palette and SIMULATED watermark), so it works offline with plotly inlined or served by the plugin.
"""

from __future__ import annotations

from typing import Any

from infersweep.report.charts import _GRID, FRONTIER_META, INTERACTIVITY, PALETTE, Figure, _figure
from infersweep.report.history import History, RunHistory, TopologyHistory, regression_lines
from infersweep.report.html import INLINE, _e, figure_div, page

#: Run colours, oldest → newest (viridis without its yellow end, which vanishes on white).
DATE_RAMP = ("#440154", "#3b528b", "#21908d", "#5dc963", "#abdc32")
REGRESSION_META = "history-regression"


def _hex(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def date_color(i: int, n: int) -> str:
    """The colour of run `i` of `n` on the oldest → newest ramp."""
    t = 0.0 if n <= 1 else i / (n - 1)
    pos = t * (len(DATE_RAMP) - 1)
    lo = min(int(pos), len(DATE_RAMP) - 2)
    frac = pos - lo
    a, b = _hex(DATE_RAMP[lo]), _hex(DATE_RAMP[lo + 1])
    return "#" + "".join(f"{round(x + (y - x) * frac):02x}" for x, y in zip(a, b, strict=True))


def _rgba(color: str, alpha: float) -> str:
    r, g, b = _hex(color)
    return f"rgba({r},{g},{b},{alpha})"


def _run_name(r: RunHistory) -> str:
    when = r.run.date.strftime("%Y-%m-%d") if r.run.date else "?"
    return f"{when} · {r.image or '?'}" + (" (backfill)" if r.run.backfilled else "")


def _iso(r: RunHistory) -> str | None:
    return r.run.date.isoformat() if r.run.date else None


HOVER = ("<b>%{customdata[0]}</b><br>tput/GPU: %{y:.1f} tok/s<br>image: %{customdata[1]}<br>run: %{customdata[2]}"
         "<br>%{customdata[3]}<extra></extra>")


def levels_chart(t: TopologyHistory, *, title: str) -> Figure:
    """Throughput/GPU at each interactivity level over the runs' dates, the noise band around the baseline
    shaded (a value under the band is a regression), regressions ringed in red."""
    traces: list[dict[str, Any]] = []
    dated = [r for r in t.runs if r.run.date is not None]
    ringed: list[tuple[RunHistory, int]] = []
    for j, level in enumerate(t.levels):
        color = PALETTE[j % len(PALETTE)]
        group = f"level-{j}"
        banded = [(r, r.levels[j]) for r in dated if r.levels[j].band is not None and r.levels[j].baseline]
        if banded:
            xs = [_iso(r) for r, _ in banded]
            lower = [(v.baseline or 0.0) * (1 - (v.band or 0.0)) for _, v in banded]
            upper = [(v.baseline or 0.0) * (1 + (v.band or 0.0)) for _, v in banded]
            traces.append({"type": "scatter", "x": xs, "y": lower, "mode": "lines", "line": {"width": 0},
                           "legendgroup": group, "showlegend": False, "hoverinfo": "skip"})
            traces.append({"type": "scatter", "x": xs, "y": upper, "mode": "lines", "line": {"width": 0},
                           "fill": "tonexty", "fillcolor": _rgba(color, 0.15), "legendgroup": group,
                           "name": f"noise band @{level:g}", "hoverinfo": "skip"})
        shown = [(r, r.levels[j]) for r in dated if r.levels[j].tput_per_gpu is not None]
        traces.append({
            "type": "scatter", "x": [_iso(r) for r, _ in shown], "y": [v.tput_per_gpu for _, v in shown],
            "mode": "lines+markers", "name": f"@{level:g} tok/s/user", "legendgroup": group,
            "line": {"color": color, "width": 2}, "marker": {"size": 8, "color": color},
            "customdata": [[f"@{level:g} tok/s/user · {v.verdict}", r.image or "?", r.run.label,
                            ("" if v.rel is None else f"{v.rel * 100:+.1f}% vs {v.baseline_run}, band "
                             f"{v.describe_band()}")] for r, v in shown],
            "hovertemplate": HOVER,
        })
        ringed.extend((r, j) for r in dated if r.levels[j].verdict in {"regression", "failed"})
    if ringed:
        traces.append({
            "type": "scatter", "mode": "markers", "name": "regression", "meta": REGRESSION_META,
            "x": [_iso(r) for r, _ in ringed],
            # a failed run has no value: ring it at the baseline's height
            "y": [r.levels[j].tput_per_gpu or r.levels[j].baseline for r, j in ringed],
            "marker": {"size": 16, "color": "rgba(0,0,0,0)", "line": {"color": "#b3261e", "width": 2.5}},
            "customdata": [[f"REGRESSION @{t.levels[j]:g} tok/s/user", r.image or "?", r.run.label,
                            "all points failed" if r.levels[j].verdict == "failed" else
                            f"{(r.levels[j].rel or 0) * 100:+.1f}% beyond {r.levels[j].describe_band()}"]
                           for r, j in ringed],
            "hovertemplate": HOVER,
        })
    fig = _figure(traces, title, INTERACTIVITY, simulated=t.simulated)
    grid = {key: v for key, v in _GRID.items() if key != "rangemode"}
    fig["layout"]["xaxis"] = {"title": {"text": "Run (logical date; backfills sit at the night they measure)"},
                              "type": "date", **grid}
    # Label each image where it takes over, so the line reads "which image moved it".
    shapes, notes = [], list(fig["layout"]["annotations"])
    previous = None
    for r in dated:
        if r.image != previous:
            shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": _iso(r), "x1": _iso(r), "y0": 0,
                           "y1": 1, "line": {"color": "#bbb", "width": 1, "dash": "dot"}})
            notes.append({"text": (r.image or "?").rsplit("/", 1)[-1], "xref": "x", "yref": "paper", "x": _iso(r),
                          "y": 1.0, "xanchor": "left", "yanchor": "bottom", "showarrow": False,
                          "font": {"size": 10, "color": "#555"}})
            previous = r.image
    fig["layout"]["shapes"] = shapes
    fig["layout"]["annotations"] = notes
    fig["layout"]["margin"] = {"l": 70, "r": 20, "t": 70, "b": 60}
    return fig


def frontiers_chart(t: TopologyHistory, *, title: str) -> Figure:
    """Every run's Pareto frontier (throughput/GPU vs interactivity), oldest to newest coloured along a ramp,
    the newest drawn thickest; dotted verticals mark the levels of the other chart."""
    traces: list[dict[str, Any]] = []
    n = len(t.runs)
    for i, r in enumerate(t.runs):
        if not r.frontier:
            continue
        color = date_color(i, n)
        newest = i == n - 1
        traces.append({
            "type": "scatter", "mode": "lines+markers", "name": _run_name(r), "meta": f"{FRONTIER_META}-run-{i}",
            "x": [v.intvty for v in r.frontier], "y": [v.tput_per_gpu for v in r.frontier],
            "line": {"color": color, "width": 3 if newest else 1.6}, "marker": {"size": 7 if newest else 5, "color": color},
            "customdata": [[_run_name(r), r.image or "?", r.run.label, f"conc {v.conc} · {v.intvty:.1f} tok/s/user"]
                           for v in r.frontier],
            "hovertemplate": HOVER,
        })
    fig = _figure(traces, title, INTERACTIVITY, simulated=t.simulated)
    fig["layout"]["shapes"] = [
        {"type": "line", "xref": "x", "yref": "paper", "x0": lv, "x1": lv, "y0": 0, "y1": 1,
         "line": {"color": PALETTE[j % len(PALETTE)], "width": 1, "dash": "dot"}}
        for j, lv in enumerate(t.levels)
    ]
    return fig


def _level_cell(r: RunHistory, j: int) -> str:
    v = r.levels[j]
    if v.tput_per_gpu is None:
        return '<td class="bad">failed</td>' if v.verdict == "failed" else "<td>—</td>"
    delta = ""
    if v.rel is not None:
        cls = {"regression": "bad", "improvement": "ok"}.get(v.verdict, "")
        delta = f' <span class="{cls}" title="{_e(v.describe_band())}">{v.rel * 100:+.1f}% (±{(v.band or 0) * 100:.0f}%)</span>'
    return f"<td>{v.tput_per_gpu:.1f}{delta}</td>"


def history_table(t: TopologyHistory, table_id: str) -> str:
    """One row per run: date, image, run, points green, tput/GPU per level with change and band, peak."""
    heads = "".join(f"<th>tput/GPU @{lv:g} tok/s/user</th>" for lv in t.levels)
    rows = []
    for r in t.runs:
        cls = "regression" if r.regressed else ""
        fails = ", ".join(f"{k}: {n}" for k, n in r.failures.items())
        rows.append(
            f'<tr class="{cls}"><td class="l">{_e(r.run.date.strftime("%Y-%m-%d %H:%M") if r.run.date else "?")}'
            f'{" (backfill)" if r.run.backfilled else ""}</td><td class="l">{_e(r.image)}</td>'
            f'<td class="l">{_e(r.run.run_id)}</td><td title="{_e(fails)}">{r.points_ok}/{r.points_total}</td>'
            + "".join(_level_cell(r, j) for j in range(len(t.levels)))
            + f"<td>{'' if r.peak_tput_per_gpu is None else f'{r.peak_tput_per_gpu:.1f}'}</td>"
            f'<td class="l">{"REGRESSION" if r.regressed else ""}</td></tr>'
        )
    return (f'<table id="{_e(table_id)}"><thead><tr><th class="l">date</th><th class="l">image</th><th class="l">run</th>'
            f'<th>points</th>{heads}<th>peak tput/GPU</th><th class="l">verdict</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def render_history(history: History, *, plotly_js: str = INLINE, title: str | None = None, header_html: str = "",
                   ) -> str:
    """The full history page. `header_html` goes verbatim under the title (callers escape it)."""
    title = title or f"infersweep history: {history.config_key}"
    regressions = history.regressions()
    since = f" since {history.since:%Y-%m-%d}" if history.since else ""
    parts = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">{len(history.runs)} runs{since}, ordered by logical date (a backfilled run sits at '
        "the night it measures). Throughput/GPU is read off each run's Pareto frontier at fixed interactivity "
        "levels. A level regresses when it drops below the previous run that reached it by more than the noise "
        f"band: max({history.floor * 100:.0f}%, {history.k:g} × sigma), sigma from that level's earlier runs "
        "(the regression gate's model).</p>",
        header_html,
    ]
    if regressions:
        items = "".join(f"<li>{_e(line)}</li>" for line in regression_lines(history))
        parts.append(f'<p class="bad" id="regressions">Regressions ({len(regressions)} levels):</p>'
                     f'<ul class="regressions">{items}</ul>')
    else:
        parts.append('<p class="ok" id="regressions">No regressions.</p>')
    if not history.topologies:
        parts.append("<p><b>No results match this selection.</b></p>")
    for i, t in enumerate(history.topologies):
        sim = ' <span class="sim">SIMULATED ENGINE — not a hardware measurement</span>' if t.simulated else ""
        parts.append(f'<h2 id="topology-{i}">{_e(t.label)} · {_e(t.model)}{sim}</h2>')
        if any(r.frontier for r in t.runs):
            f1 = levels_chart(t, title=f"Throughput/GPU at fixed interactivity over time · {t.topology}")
            f2 = frontiers_chart(t, title=f"Pareto frontier per run (old → new) · {t.topology}")
            parts.append(f'<div class="charts" id="history-charts-{i}">' + figure_div(f1, f"history-{i}-levels")
                         + figure_div(f2, f"history-{i}-frontiers") + "</div>")
        parts.append(history_table(t, f"history-table-{i}"))
    return page(title, "\n".join(parts), plotly_js=plotly_js)
