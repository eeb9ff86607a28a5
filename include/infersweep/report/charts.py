"""Plotly figures: throughput/GPU vs interactivity and vs E2E latency, with the Pareto frontier.

One figure per (engine kind, model, isl, osl) group; one series per (runner, framework, precision,
spec decoding, topology), drawn in concurrency order like InferenceX's dashboard. The frontier trace is
named `Pareto frontier` and carries `meta="pareto-frontier"` so tests and tools can find it.

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


INTERACTIVITY = Axis(
    value=lambda p: p.median_intvty,
    title="Interactivity (tok/s/user, median) → higher is better",
    direction="max",
    hover="interactivity: {:.1f} tok/s/user",
)
E2E_LATENCY = Axis(
    value=lambda p: p.e2el_s,
    title="End-to-end latency (s, median) ← lower is better",
    direction="min",
    hover="E2E latency: {:.2f} s",
)
THROUGHPUT = Axis(
    value=lambda p: p.tput_per_gpu,
    title="Throughput per GPU (tok/s/GPU) ↑ higher is better",
    direction="max",
    hover="",
)


def _customdata(p: ReportPoint, axis: Axis) -> list[Any]:
    x = axis.value(p)
    flag = " · client-bound (the client, not the server, limited this point)" if p.client_bound else ""
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
        traces.append(
            _scatter(
                front, x_axis, name=FRONTIER_NAME, meta=FRONTIER_META, mode="lines+markers",
                line={"color": "rgba(20,20,20,0.85)", "width": 2.5, "dash": "dash", "shape": "linear"},
                marker={"size": 13, "color": "rgba(0,0,0,0)", "line": {"color": "#111", "width": 2}},
            )
        )
    return _figure(traces, title, x_axis, simulated=any(p.simulated for p in points))


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
