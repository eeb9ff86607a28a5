"""The HTML report: self-contained, charts per model × ISL/OSL, frontier traces, full table, labels."""

from __future__ import annotations

import json
import re

import pytest

from infersweep.report.charts import FRONTIER_META, INTERACTIVITY, frontier_points, throughput_chart
from infersweep.report.compare import compare
from infersweep.report.gate import run_gate
from infersweep.report.html import render_compare, render_report
from infersweep.report.sample import sample_points

from .factories import pt


@pytest.fixture(scope="module")
def sample():
    return sample_points()


@pytest.fixture(scope="module")
def page(sample):
    return render_report(sample, title="t")


def _figures(html: str) -> list[dict]:
    """The plotly figures embedded in the page (`Plotly.newPlot("id", data, layout, config)`)."""
    decoder = json.JSONDecoder()
    out = []
    for m in re.finditer(r'Plotly\.newPlot\("([^"]+)", ', html):
        data, end = decoder.raw_decode(html, m.end())
        layout, _ = decoder.raw_decode(html, end + 2)
        out.append({"id": m.group(1), "data": data, "layout": layout})
    return out


def test_page_is_self_contained_with_plotly_inlined(page):
    assert page.startswith("<!DOCTYPE html>")
    assert re.search(r"<script[^>]*\ssrc=", page) is None  # no external script at all (no CDN)
    assert re.search(r"<link[^>]*\shref=\"https?:", page) is None
    assert len(page) > 3_000_000  # plotly.js itself is inlined
    assert page.count("Plotly.newPlot(") == 4  # 2 seq lens × (interactivity, E2E)


def test_every_chart_has_a_frontier_and_one_series_per_configuration(page):
    figs = _figures(page)
    assert len(figs) == 4
    for fig in figs:
        names = [t["name"] for t in fig["data"]]
        assert names.count("Pareto frontier") == 1
        frontier = next(t for t in fig["data"] if t.get("meta") == FRONTIER_META)
        assert len(frontier["x"]) >= 2
        assert len(names) - 1 == 5  # 5 (runner, framework, precision, spec, topology) series
    assert {f["id"] for f in figs} == {"chart-0-intvty", "chart-0-e2el", "chart-1-intvty", "chart-1-e2el"}


def test_frontier_crosses_series_and_is_monotone(sample):
    group = [p for p in sample if p.isl == 1024]
    front = frontier_points(group, INTERACTIVITY)
    xs = [p.median_intvty for p in front]
    ys = [p.tput_per_gpu for p in front]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # max/max frontier: tput falls as intvty rises
    assert len({p.series_label for p in front}) >= 2


def test_hover_carries_the_traceable_identity(sample):
    fig = throughput_chart([p for p in sample if p.isl == 1024], INTERACTIVITY, title="x")
    trace = fig["data"][0]
    cd = trace["customdata"][0]
    p = next(p for p in sample if p.series_label == trace["name"] and p.isl == 1024 and p.conc == 4)
    assert cd[0] == p.config_key and cd[2] == p.conc and cd[4] == p.image and cd[5] == p.recipe_fingerprint[:12]
    assert "conc" in trace["hovertemplate"] and "recipe" in trace["hovertemplate"]


def test_axis_titles_state_the_direction(page):
    layouts = [f["layout"] for f in _figures(page)]
    assert "higher is better" in layouts[0]["xaxis"]["title"]["text"]
    assert "lower is better" in layouts[1]["xaxis"]["title"]["text"]
    assert all("higher is better" in lay["yaxis"]["title"]["text"] for lay in layouts)


def test_table_lists_every_point_including_failures_with_class(page, sample):
    rows = re.findall(r'<tr class="(failed|)">', page)
    assert len(rows) == len(sample)
    assert rows.count("failed") == sum(not p.ok for p in sample) == 2
    assert "failed: kv_cache_oom" in page
    assert "68/70 points green" in page and "68/70 green" in page  # header and run summary


def test_simulated_results_are_labelled_and_never_share_a_chart_with_real_ones():
    real = [pt(c, engine="vllm-docker") for c in (4, 8)]
    sim = [pt(c, engine="sim") for c in (4, 8)]
    html = render_report(real + sim)
    figs = _figures(html)
    assert len(figs) == 4  # real group and sim group, 2 charts each
    assert html.count("SIMULATED ENGINE") == 1
    assert html.index("SIMULATED ENGINE") > html.index("chart-0-intvty")  # real results come first
    marks = [[a["text"] for a in f["layout"]["annotations"]] for f in figs]
    assert marks == [[], [], ["SIMULATED"], ["SIMULATED"]]  # cropped sim charts still say what they are


def test_user_strings_are_escaped():
    html = render_report([pt(4, config_key="<script>alert(1)</script>", status="failed")], plotly_js="x.js")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


def test_empty_selection_renders_a_clear_message():
    assert "No results match" in render_report([], plotly_js="x.js")


def test_plotly_can_be_referenced_by_url_instead_of_inlined():
    html = render_report([pt(4)], plotly_js="static/plotly.min.js")
    assert '<script type="text/javascript" src="static/plotly.min.js"></script>' in html
    assert len(html) < 200_000


def test_compare_page_overlays_both_frontiers_and_lists_deltas():
    base = [pt(c, tput=1000 * c ** 0.5, intvty=100 / c ** 0.3) for c in (4, 8, 16)]
    head = [pt(c, run="r2", image="img:b", tput=800 * c ** 0.5, intvty=100 / c ** 0.3) for c in (4, 8, 16)]
    comparison = compare(base, head, base_label="img:a", head_label="img:b")
    html = render_compare(comparison, run_gate(comparison), plotly_js="x.js")
    metas = {t.get("meta") for f in _figures(html) for t in f["data"]}
    assert {f"{FRONTIER_META}-base", f"{FRONTIER_META}-head"} <= metas
    assert html.count('<tr class="regression">') == 3
    assert "gate FAIL" in html
