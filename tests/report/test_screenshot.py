"""Look at the report in headless Chromium (driven by Playwright): it renders the frontier, with no console
errors; a page that breaks, hangs or lacks the clipped element gives a clear error, not a hang."""

from __future__ import annotations

import pytest

from infersweep.faults.errors import InfersweepError
from infersweep.report.browser import (
    BrowserError,
    BrowserUnavailable,
    png_info,
    render_page,
    unavailable_reason,
)
from infersweep.report.html import render_report
from infersweep.report.sample import sample_points
from infersweep.report.service import build_report

from .seed import seed, store_engine

REASON = unavailable_reason()
needs_browser = pytest.mark.skipif(REASON is not None, reason=f"cannot render in a browser here: {REASON}")
pytestmark = pytest.mark.integration


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


@needs_browser
def test_fixture_report_renders_frontier_without_console_errors(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_report(sample_points(seq_lens=((1024, 1024),)), title="fixture run"))
    result = render_page(page, width=1400, height=1000, full_page=True)
    _assert_rendered(result, charts=2)
    (tmp_path / "shot.png").write_bytes(result.png)


@needs_browser
def test_report_through_sqlite_store_renders(tmp_path, sqlite_url):
    seed(store_engine(sqlite_url), sample_points(seq_lens=((8192, 1024),)))
    out = build_report(tmp_path / "db.html", db_url=sqlite_url)
    result = render_page(out.path, width=1400, height=900, clip_selector="#chart-0-intvty")
    _assert_rendered(result, charts=2)


@needs_browser
def test_a_broken_page_is_caught(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(render_report(sample_points(seq_lens=((1024, 1024),)), plotly_js="missing-plotly.js"))
    result = render_page(page, width=800, height=600, timeout=20)
    assert any("Plotly is not defined" in e for e in result.console_errors), result.console_errors
    assert not result.plots_ready


@needs_browser
def test_a_missing_clip_element_is_a_clear_error(tmp_path):
    page = tmp_path / "plain.html"
    page.write_text("<html><body><p>no charts</p></body></html>")
    with pytest.raises(BrowserError, match="no element matches '#chart-0-intvty'"):
        render_page(page, clip_selector="#chart-0-intvty", timeout=10)


@needs_browser
def test_a_page_stuck_in_a_script_times_out(tmp_path):
    page = tmp_path / "hang.html"
    page.write_text("<html><body><script>while (true) {}</script></body></html>")
    # On a loaded machine the 3 s may already be gone while Chromium starts; either way a clear error, no hang.
    with pytest.raises(BrowserError, match=r"did not finish loading in 3 s|the 3 s rendering deadline passed"):
        render_page(page, timeout=3)


@needs_browser
def test_a_binary_that_is_not_chromium_is_a_clear_error(tmp_path):
    page = tmp_path / "plain.html"
    page.write_text("<p>hi</p>")
    with pytest.raises(BrowserError, match=r"chromium \(/bin/false\) did not start"):
        render_page(page, chromium="/bin/false", timeout=10)


def test_no_chromium_is_browser_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERSWEEP_CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert "no Chromium found" in (unavailable_reason() or "")
    with pytest.raises(BrowserUnavailable, match="apt-get install chromium") as info:
        render_page(tmp_path / "report.html")
    assert isinstance(info.value, InfersweepError)
    assert (info.value.kind, info.value.transient) == ("browser_unavailable", False)
