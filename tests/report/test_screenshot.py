"""Look at the report in headless Chromium: it renders the frontier, with no console errors."""

from __future__ import annotations

import pytest

from infersweep.report.browser import find_chromium, png_info, render_page
from infersweep.report.html import render_report
from infersweep.report.sample import sample_points
from infersweep.report.service import build_report

from .seed import seed, store_engine

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(find_chromium() is None, reason="Chromium not installed (apt-get install chromium)"),
]


def _assert_rendered(result, *, charts: int) -> None:
    assert result.console_errors == []
    assert result.plots_ready
    width, height, distinct = png_info(result.png)
    assert width > 600 and height > 300
    assert distinct > 32  # not a blank / single-colour image
    assert len(result.probe) == charts
    for chart in result.probe:
        assert chart["svg"]
        assert [f["name"] for f in chart["frontier"]] == ["Pareto frontier"]
        assert chart["frontier"][0]["n"] >= 2


def test_fixture_report_renders_frontier_without_console_errors(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_report(sample_points(seq_lens=((1024, 1024),)), title="fixture run"))
    result = render_page(page, width=1400, height=1000, full_page=True)
    _assert_rendered(result, charts=2)
    (tmp_path / "shot.png").write_bytes(result.png)


def test_report_through_sqlite_store_renders(tmp_path, sqlite_url):
    seed(store_engine(sqlite_url), sample_points(seq_lens=((8192, 1024),)))
    out = build_report(tmp_path / "db.html", db_url=sqlite_url)
    result = render_page(out.path, width=1400, height=900, clip_selector="#chart-0-intvty")
    _assert_rendered(result, charts=2)


def test_a_broken_page_is_caught(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(render_report(sample_points(seq_lens=((1024, 1024),)), plotly_js="missing-plotly.js"))
    result = render_page(page, width=800, height=600, timeout=20)
    assert any("Plotly is not defined" in e for e in result.console_errors), result.console_errors
    assert not result.plots_ready
