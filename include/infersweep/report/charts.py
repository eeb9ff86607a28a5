"""Plotly figures: throughput/GPU vs interactivity and vs E2E latency, with the Pareto frontier.

One figure per (engine kind, model, isl, osl) group; one series per (runner, framework, precision,
spec decoding, topology), drawn in concurrency order like InferenceX's dashboard. The frontier trace is
named `Pareto frontier` and carries `meta="pareto-frontier"` so tests and tools can find it.

Where frontier points carry confidence intervals (`ReportPoint.intervals`), the frontier gets a shaded
band (`meta="frontier-band"`): a closed polygon through the throughput/GPU upper bounds left to right and
the lower bounds back, over each run of consecutive frontier points that have an interval; and error bars
on the frontier's markers (y: throughput/GPU, x: the x metric's interval where it exists). Points without
intervals draw as before.

Figures are plain plotly JSON dicts (`{"data": [...], "layout": {...}}`), not `plotly.graph_objects`:
graph-object validation cost ~0.3 s per chart, which made a fleet-size report take minutes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from infersweep.report.data import ReportPoint
from infersweep.report.pareto import Direction, pareto_front

#: A plotly figure as JSON-ready dicts.
Figure = dict[str, Any]

FRONTIER_NAME = "Pareto frontier"
FRONTIER_META = "pareto-frontier"
BAND_META = "frontier-band"
ERRORS_META = "frontier-error-bars"
BAND_FILL = "rgba(20,20,20,0.13)"
PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22",
    "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173",
)

HOVER = (
    "<b>%{customdata[0]}</b><br>"
    "series: %{customdata[1]}<br>"
    "conc: %{customdata[2]}<br>"
    "tput/GPU: %{y:.1f} tok/s<br>"
    "%{customdata[3]}<br>"
    "image: %{customdata[4]}<br>"
    "recipe: %{customdata[5]}<br>"
    "run: %{customdata[6]}%{customdata[7]}"
    "<extra></extra>"
)


@dataclass(frozen=True)
class Axis:
    """One chart axis: how to read it from a point, its title and which way is better."""

    value: Callable[[ReportPoint], float | None]
    title: str
    direction: Direction
    hover: str
    #: The ReportPoint.intervals key of this axis's metric, and the factor from that metric to axis units.
    interval_metric: str | None = None
    interval_scale: float = 1.0

    def interval(self, p: ReportPoint) -> tuple[float, float] | None:
        """(lo, hi) of the point's interval on this axis, in axis units; None without one."""
        iv = p.interval(self.interval_metric) if self.interval_metric else None
        return None if iv is None else (iv[0] * self.interval_scale, iv[1] * self.interval_scale)


INTERACTIVITY = Axis(
    value=lambda p: p.median_intvty,
    title="Interactivity (tok/s/user, median) → higher is better",
    direction="max",
    hover="interactivity: {:.1f} tok/s/user",
    interval_metric="median_intvty",
)
E2E_LATENCY = Axis(
    value=lambda p: p.e2el_s,
    title="End-to-end latency (s, median) ← lower is better",
    direction="min",
    hover="E2E latency: {:.2f} s",
    interval_metric="median_e2el_ms",
    interval_scale=1 / 1000.0,
)
THROUGHPUT = Axis(
    value=lambda p: p.tput_per_gpu,
    title="Throughput per GPU (tok/s/GPU) ↑ higher is better",
    direction="max",
    hover="",
    interval_metric="tput_per_gpu",
)


def _customdata(p: ReportPoint, axis: Axis) -> list[Any]:
    x = axis.value(p)
    flag = " · client-bound (the client, not the server, limited this point)" if p.client_bound else ""
    tput_iv = p.interval("tput_per_gpu")
    if tput_iv is not None:
        level = p.intervals["tput_per_gpu"].get("level")
        flag += f"<br>tput/GPU {_level(level)} CI: [{tput_iv[0]:.1f}, {tput_iv[1]:.1f}]"
    if p.usd_per_mtok_output is not None:
        flag += f"<br>$/Mtok out: {p.usd_per_mtok_output:.3f} (at ${p.cost_per_gpu_hour:g}/GPU-h)"
    if p.joules_per_token is not None:
        flag += f"<br>J/tok out: {p.joules_per_token:.3g}"
    return [
        p.config_key or p.model,
        p.series_label,
        p.conc,
        axis.hover.format(x) if x is not None else "",
        p.image or "?",
        p.fingerprint_prefix or "?",
        p.run_label,
        flag,
    ]


def _level(level: Any) -> str:
    return f"{float(level) * 100:g}%" if isinstance(level, int | float) and not isinstance(level, bool) else "?"


def series_colors(points: Sequence[ReportPoint]) -> dict[str, str]:
    """A stable colour per series label (sorted), shared by both charts of a group."""
    labels = sorted({p.series_label for p in points})
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}


def frontier_points(points: Sequence[ReportPoint], x_axis: Axis, y_axis: Axis = THROUGHPUT) -> list[ReportPoint]:
    """The successful points on the Pareto frontier of the two axes, in ascending x order."""
    ok = [p for p in points if p.ok]
    idx = pareto_front(
        [x_axis.value(p) for p in ok], [y_axis.value(p) for p in ok], x_dir=x_axis.direction, y_dir=y_axis.direction
    )
    return [ok[i] for i in idx]


def _scatter(points: Sequence[ReportPoint], axis: Axis, **kwargs: Any) -> dict[str, Any]:
    return {
        "type": "scatter",
        "x": [axis.value(p) for p in points],
        "y": [p.tput_per_gpu for p in points],
        "customdata": [_customdata(p, axis) for p in points],
        "hovertemplate": HOVER,
        **kwargs,
    }


_GRID = {"gridcolor": "#ebebeb", "linecolor": "#444", "ticks": "outside", "rangemode": "tozero", "zeroline": False}


#: Watermark on every chart of simulated results: a cropped screenshot must still say what it shows.
SIM_WATERMARK = {
    "text": "SIMULATED", "xref": "paper", "yref": "paper", "x": 0.99, "y": 0.99, "xanchor": "right",
    "yanchor": "top", "showarrow": False, "font": {"size": 26, "color": "rgba(176,120,0,0.35)"},
}


def _figure(traces: list[dict[str, Any]], title: str, x_axis: Axis, *, simulated: bool = False) -> Figure:
    return {
        "data": traces,
        "layout": {
            "title": {"text": title, "x": 0.01, "xanchor": "left", "xref": "container", "font": {"size": 15}},
            "height": 460,
            "margin": {"l": 70, "r": 20, "t": 50, "b": 60},
            "paper_bgcolor": "#fff",
            "plot_bgcolor": "#fff",
            "font": {"color": "#2a3f5f"},
            "legend": {"font": {"size": 11}, "itemclick": "toggle", "itemdoubleclick": "toggleothers"},
            "hoverlabel": {"align": "left"},
            "hovermode": "closest",
            "xaxis": {"title": {"text": x_axis.title}, **_GRID},
            "yaxis": {"title": {"text": THROUGHPUT.title}, **_GRID},
            "annotations": [SIM_WATERMARK] if simulated else [],
        },
    }


def throughput_chart(points: Sequence[ReportPoint], x_axis: Axis, *, title: str) -> Figure:
    """One chart: every series in concurrency order plus the global Pareto frontier."""
    traces: list[dict[str, Any]] = []
    colors = series_colors(points)
    by_series: dict[str, list[ReportPoint]] = defaultdict(list)
    for p in points:
        if p.ok and x_axis.value(p) is not None:
            by_series[p.series_label].append(p)
    for label in sorted(by_series):
        pts = sorted(by_series[label], key=lambda p: p.conc)
        traces.append(
            _scatter(
                pts, x_axis, name=label, mode="lines+markers",
                marker={"size": 8, "color": colors[label],
                        "symbol": ["x" if p.client_bound else "circle" for p in pts]},
                line={"width": 1.5, "color": colors[label]},
                text=[str(p.conc) for p in pts],
            )
        )
    front = frontier_points(points, x_axis)
    if front:
        traces.extend(band_traces(front, x_axis))
        traces.append(
            _scatter(
                front, x_axis, name=FRONTIER_NAME, meta=FRONTIER_META, mode="lines+markers",
                line={"color": "rgba(20,20,20,0.85)", "width": 2.5, "dash": "dash", "shape": "linear"},
                marker={"size": 13, "color": "rgba(0,0,0,0)", "line": {"color": "#111", "width": 2}},
            )
        )
        bars = error_bar_trace(front, x_axis)
        if bars is not None:
            traces.append(bars)
    return _figure(traces, title, x_axis, simulated=any(p.simulated for p in points))


def error_bar_trace(front: Sequence[ReportPoint], x_axis: Axis) -> dict[str, Any] | None:
    """Asymmetric error bars at the frontier points that have an interval (y: throughput/GPU, x: the x
    metric where it has one), as a marker-less trace of their own (`meta="frontier-error-bars"`): plotly
    draws a zero-length bar for a missing value inside one trace, so points without intervals are left out
    rather than given empty bars. None when no frontier point has an interval."""
    pts = [p for p in front if x_axis.value(p) is not None
           and (THROUGHPUT.interval(p) is not None or x_axis.interval(p) is not None)]
    if not pts:
        return None
    trace: dict[str, Any] = {
        "type": "scatter", "x": [x_axis.value(p) for p in pts], "y": [p.tput_per_gpu for p in pts],
        "mode": "markers", "marker": {"size": 1, "opacity": 0}, "hoverinfo": "skip", "showlegend": False,
        "name": "frontier intervals", "meta": ERRORS_META, "legendgroup": BAND_META,
    }
    for key, axis in (("error_y", THROUGHPUT), ("error_x", x_axis)):
        plus: list[float] = []
        minus: list[float] = []
        for p in pts:
            value, iv = axis.value(p), axis.interval(p)
            # An interval need not contain the point estimate (a bootstrap's may sit to one side): that side's
            # bar then has zero length rather than a negative one. No interval on this axis: no bar (0, 0).
            plus.append(0.0 if value is None or iv is None else max(iv[1] - value, 0.0))
            minus.append(0.0 if value is None or iv is None else max(value - iv[0], 0.0))
        if any(plus) or any(minus):
            trace[key] = {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "visible": True,
                          "color": "rgba(20,20,20,0.6)", "thickness": 1.2, "width": 3}
    return trace


def band_segments(front: Sequence[ReportPoint], x_axis: Axis) -> list[list[ReportPoint]]:
    """Runs of consecutive frontier points (in x order) that all have a throughput/GPU interval. A run of one
    point has no width to shade; its error bar shows its interval."""
    runs: list[list[ReportPoint]] = [[]]
    for p in front:
        if p.interval("tput_per_gpu") is not None and x_axis.value(p) is not None:
            runs[-1].append(p)
        elif runs[-1]:
            runs.append([])
    return [r for r in runs if len(r) >= 2]


def band_traces(front: Sequence[ReportPoint], x_axis: Axis) -> list[dict[str, Any]]:
    """The shaded frontier band: one closed polygon per segment, upper bounds left to right then lower
    bounds right to left, at the frontier points' x values. Drawn under the frontier line."""
    traces: list[dict[str, Any]] = []
    for i, seg in enumerate(band_segments(front, x_axis)):
        xs = [x_axis.value(p) for p in seg]
        bounds = [p.interval("tput_per_gpu") for p in seg]
        his = [b[1] for b in bounds if b is not None]
        los = [b[0] for b in bounds if b is not None]
        level = _level(seg[0].intervals["tput_per_gpu"].get("level"))
        traces.append({
            "type": "scatter", "x": xs + xs[::-1], "y": his + los[::-1], "mode": "lines", "fill": "toself",
            "fillcolor": BAND_FILL, "line": {"width": 0, "color": BAND_FILL}, "hoverinfo": "skip",
            "name": f"Frontier band ({level} CI of tput/GPU)", "meta": BAND_META, "legendgroup": BAND_META,
            "showlegend": i == 0,
        })
    return traces


def overlay_chart(
    base: Sequence[ReportPoint], head: Sequence[ReportPoint], x_axis: Axis, *, title: str,
    base_label: str, head_label: str,
) -> Figure:
    """Compare view: base points and frontier in grey, head points and frontier in colour."""
    traces: list[dict[str, Any]] = []
    for side, pts, color, dash in (
        ("base", base, "#9a9a9a", "dot"),
        ("head", head, "#d62728", "solid"),
    ):
        label = base_label if side == "base" else head_label
        ok = [p for p in pts if p.ok and x_axis.value(p) is not None]
        if not ok:
            continue
        traces.append(_scatter(ok, x_axis, name=f"{side}: {label}", mode="markers",
                               marker={"size": 7, "color": color, "opacity": 0.7}))
        front = frontier_points(ok, x_axis)
        traces.append(
            _scatter(front, x_axis, name=f"{FRONTIER_NAME} ({side})", meta=f"{FRONTIER_META}-{side}",
                     mode="lines+markers", line={"color": color, "width": 2.5, "dash": dash},
                     marker={"size": 10, "color": color})
        )
    return _figure(traces, title, x_axis, simulated=any(p.simulated for p in (*base, *head)))
