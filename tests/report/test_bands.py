"""Confidence intervals on report points and the frontier bands drawn from them (chart spec, HTML, text)."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import update

from infersweep.report import store_source as src
from infersweep.report.charts import (
    BAND_META,
    E2E_LATENCY,
    ERRORS_META,
    FRONTIER_META,
    INTERACTIVITY,
    band_segments,
    frontier_points,
    throughput_chart,
)
from infersweep.report.data import clean_intervals
from infersweep.report.html import render_report
from infersweep.report.json_source import dump_points, load_file
from infersweep.report.text import cost_frontier_table
from infersweep.store.models import BenchmarkResult

from .factories import pt
from .seed import seed


def iv(lo: float, hi: float, n: int = 200) -> dict[str, object]:
    return {"lo": lo, "hi": hi, "level": 0.95, "method": "bootstrap", "n": n}


def frontier(*, with_intervals: bool = True):
    """Three frontier points (x = interactivity 20, 50, 90) plus a dominated one; conc 16 also has an
    interactivity interval."""
    ivs = {
        4: {"tput_per_gpu": iv(550, 640)},
        16: {"tput_per_gpu": iv(1100, 1300), "median_intvty": iv(45, 56)},
        64: {"tput_per_gpu": iv(1700, 1850)},
    }
    pts = [pt(c, tput=t, intvty=x, intervals=ivs[c] if with_intervals else {})
           for c, t, x in ((4, 600.0, 90.0), (16, 1200.0, 50.0), (64, 1800.0, 20.0))]
    return [*pts, pt(8, tput=500.0, intvty=40.0, intervals={"tput_per_gpu": iv(480, 520)})]


def by_meta(fig):
    out = {}
    for t in fig["data"]:
        out.setdefault(t.get("meta"), []).append(t)
    return out


def test_band_is_a_closed_polygon_through_the_frontiers_bounds():
    fig = throughput_chart(frontier(), INTERACTIVITY, title="t")
    traces = by_meta(fig)
    (band,) = traces[BAND_META]
    # upper bounds left to right, then lower bounds right to left, at the frontier points' x
    assert band["x"] == [20.0, 50.0, 90.0, 90.0, 50.0, 20.0]
    assert band["y"] == [1850.0, 1300.0, 640.0, 550.0, 1100.0, 1700.0]
    assert band["fill"] == "toself" and band["hoverinfo"] == "skip" and "95% CI" in band["name"]
    # the dominated point's interval does not widen the band; the band is drawn under the frontier line
    assert 480.0 not in band["y"] and 520.0 not in band["y"]
    metas = [t.get("meta") for t in fig["data"]]
    assert metas.index(BAND_META) < metas.index(FRONTIER_META)


def test_error_bars_from_the_intervals():
    (bars,) = by_meta(throughput_chart(frontier(), INTERACTIVITY, title="t"))[ERRORS_META]
    assert bars["x"] == [20.0, 50.0, 90.0] and bars["y"] == [1800.0, 1200.0, 600.0]
    assert bars["error_y"]["array"] == [50.0, 100.0, 40.0] and bars["error_y"]["arrayminus"] == [100.0, 100.0, 50.0]
    # interactivity has an interval only at conc 16 (x = 50): 45..56 around 50
    assert bars["error_x"]["array"] == [0.0, 6.0, 0.0] and bars["error_x"]["arrayminus"] == [0.0, 5.0, 0.0]
    assert bars["error_y"]["symmetric"] is False and bars["showlegend"] is False


def test_interval_not_containing_the_estimate_gets_no_negative_bar():
    p = [pt(8, tput=1000.0, intvty=50.0, intervals={"tput_per_gpu": iv(1010, 1100)}),
         pt(16, tput=1500.0, intvty=30.0, intervals={"tput_per_gpu": iv(1400, 1600)})]
    (bars,) = by_meta(throughput_chart(p, INTERACTIVITY, title="t"))[ERRORS_META]
    assert bars["error_y"]["arrayminus"] == [100.0, 0.0] and bars["error_y"]["array"] == [100.0, 100.0]


def test_points_without_intervals_split_the_band_and_draw_as_before():
    pts = frontier()
    # conc 16 (the middle of the frontier) loses its interval: two one-point runs, so nothing to shade
    pts[1] = pts[1].model_copy(update={"intervals": {}})
    fig = throughput_chart(pts, INTERACTIVITY, title="t")
    assert BAND_META not in by_meta(fig)
    (bars,) = by_meta(fig)[ERRORS_META]
    assert bars["x"] == [20.0, 90.0] and "error_x" not in bars  # no interactivity interval left
    # four frontier points, the third without an interval: one band over the first two
    four = [pt(c, tput=t, intvty=x, intervals={} if c == 8 else {"tput_per_gpu": iv(t - 10, t + 10)})
            for c, t, x in ((2, 400.0, 95.0), (8, 900.0, 60.0), (16, 1200.0, 50.0), (64, 1800.0, 20.0))]
    front = frontier_points(four, INTERACTIVITY)
    assert [[p.conc for p in seg] for seg in band_segments(front, INTERACTIVITY)] == [[64, 16]]
    (band,) = by_meta(throughput_chart(four, INTERACTIVITY, title="t"))[BAND_META]
    assert band["x"] == [20.0, 50.0, 50.0, 20.0] and band["y"] == [1810.0, 1210.0, 1190.0, 1790.0]


def test_without_intervals_the_chart_is_unchanged():
    plain = throughput_chart(frontier(with_intervals=False)[:3], INTERACTIVITY, title="t")
    assert [t.get("meta") for t in plain["data"]] == [None, FRONTIER_META]
    assert all("error_y" not in t and "error_x" not in t for t in plain["data"])


def test_e2e_chart_uses_the_latency_interval_in_seconds():
    p = [pt(8, tput=1000.0, e2el=20000.0, intervals={"tput_per_gpu": iv(950, 1050), "median_e2el_ms": iv(18000, 23000)}),
         pt(32, tput=1600.0, e2el=40000.0, intervals={"tput_per_gpu": iv(1500, 1700)})]
    assert E2E_LATENCY.interval(p[0]) == (18.0, 23.0)
    fig = throughput_chart(p, E2E_LATENCY, title="t")
    (bars,) = by_meta(fig)[ERRORS_META]
    assert bars["error_x"]["array"] == [3.0, 0.0] and bars["error_x"]["arrayminus"] == [2.0, 0.0]
    (band,) = by_meta(fig)[BAND_META]
    assert band["x"] == [20.0, 40.0, 40.0, 20.0] and band["y"] == [1050.0, 1700.0, 1500.0, 950.0]


def test_html_report_draws_the_band_offline():
    page = render_report(frontier())  # plotly.js inlined, as the CLI writes it
    assert f'"meta":"{BAND_META}"' in page and f'"meta":"{ERRORS_META}"' in page
    assert '"y":[1850.0,1300.0,640.0,550.0,1100.0,1700.0]' in page
    assert re.search(r"<script[^>]*\ssrc=", page) is None  # no external script at all (no CDN)
    # the frontier table shows the intervals next to the values
    table = page.split('id="frontier-cost-0-0"', 1)[1].split("</table>", 1)[0]
    assert "[1100.0, 1300.0]" in table and "[45.0, 56.0]" in table


def test_text_frontier_table_shows_intervals():
    text = cost_frontier_table(frontier())
    assert "1200.0 [1100.0, 1300.0]" in text and "50.0 [45.0, 56.0]" in text


def test_clean_intervals_keeps_only_well_formed_entries():
    good = iv(1.0, 2.0)
    assert clean_intervals({"tput_per_gpu": good}) == {"tput_per_gpu": {**good, "lo": 1.0, "hi": 2.0}}
    assert clean_intervals(None) == {} and clean_intervals([good]) == {}
    assert clean_intervals({"a": {"lo": 2, "hi": 1}, "b": {"lo": None, "hi": 1}, "c": "x", "d": {"lo": True, "hi": 2},
                            "e": {"lo": float("nan"), "hi": 1}, 5: good}) == {}


def test_store_loads_intervals_in_the_gates_shape(engine):
    seed(engine, frontier(with_intervals=False))
    stored = {"tput_per_gpu": iv(1100, 1300, n=3), "median_intvty": iv(45, 56, n=3)}
    with engine.begin() as conn:
        conn.execute(update(BenchmarkResult).where(BenchmarkResult.conc == 16).values(intervals=stored))
        conn.execute(update(BenchmarkResult).where(BenchmarkResult.conc == 4)
                     .values(intervals={"tput_per_gpu": {"lo": "x"}}))  # malformed: dropped, not half-drawn
    by_conc = {p.conc: p for p in src.load_runs(engine, ["cfg/r1"])}
    assert (getattr(by_conc[16], "intervals", None) or {}) == stored
    assert by_conc[16].interval("tput_per_gpu") == (1100.0, 1300.0)
    assert by_conc[4].intervals == {} and by_conc[64].intervals == {}
    (band_bars,) = by_meta(throughput_chart(list(by_conc.values()), INTERACTIVITY, title="t"))[ERRORS_META]
    assert band_bars["x"] == [50.0]


def test_result_files_carry_intervals(tmp_path):
    dump_points(frontier(), tmp_path / "p.json")
    loaded = load_file(tmp_path / "p.json")
    assert [p.intervals for p in loaded] == [p.intervals for p in frontier()]
    spool = tmp_path / "s.jsonl"
    group = {"dag_id": "d", "run_id": "r", "group_id": "g", "config_key": "k", "model": "m", "runner": "h200"}
    bench = {"dag_id": "d", "run_id": "r", "group_id": "g", "isl": 1, "osl": 1, "conc": 8, "status": "ok",
             "tput_per_gpu": 9.0, "intervals": {"tput_per_gpu": iv(8, 10), "bad": {"lo": 1}}}
    spool.write_text("\n".join(json.dumps({"kind": k, "data": d}) for k, d in (("group", group), ("benchmark", bench))))
    (p,) = load_file(spool)
    assert p.intervals == {"tput_per_gpu": {**iv(8, 10), "lo": 8.0, "hi": 10.0}}


def test_band_renders_in_a_browser_without_errors(tmp_path):
    """plotly.js accepts the band and error-bar traces: the page draws every trace with no console error."""
    from infersweep.report.browser import render_page, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"cannot render in a browser here: {reason}")
    path = tmp_path / "band.html"
    pts = frontier()
    path.write_text(render_report(pts))
    result = render_page(path, clip_selector="#chart-0-intvty", timeout=120)
    assert result.console_errors == [] and result.plots_ready
    expected = {"chart-0-intvty": len(throughput_chart(pts, INTERACTIVITY, title="t")["data"]),
                "chart-0-e2el": len(throughput_chart(pts, E2E_LATENCY, title="t")["data"])}
    assert {c["id"]: c["traces"] for c in result.probe} == expected
    assert expected["chart-0-intvty"] == 4  # one series, the band, the frontier and its error bars
