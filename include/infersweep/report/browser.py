"""Render a report page in headless Chromium: screenshot, console errors, and DOM/JS checks.

Playwright drives the machine's own Chromium (`executable_path`): no browser is downloaded, and
`playwright install` is never called. Playwright, not the one-shot `--screenshot` flag, because it reports
uncaught exceptions and console errors precisely and lets us wait until plotly has drawn every chart
before taking the picture.

The browser gets a fresh throwaway profile, no network services (sync, component updates, background
networking, QUIC off) and a deadline on every step; Playwright kills it (its whole process group) on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infersweep.faults.errors import InfersweepError

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
#: Extra switches on top of Playwright's own; headless is Playwright's `headless=True`, and the profile
#: is a fresh `user_data_dir` (Playwright refuses `--user-data-dir` in args).
CHROMIUM_FLAGS = (
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)

#: JS: true once every plotly div has rendered its SVG (plotly adds `.main-svg` when drawing is done).
PLOTS_READY = """(() => {
  const plots = Array.from(document.querySelectorAll('.plotly-graph-div'));
  return plots.length > 0 && plots.every(gd => gd.querySelector('.main-svg') && gd._fullLayout);
})()"""

#: JS: the Pareto frontier traces of every chart (name, meta, number of vertices) as JSON.
FRONTIER_PROBE = """JSON.stringify(Array.from(document.querySelectorAll('.plotly-graph-div')).map(gd => ({
  id: gd.id,
  frontier: (gd.data || []).filter(t => String(t.meta || '').startsWith('pareto-frontier'))
                          .map(t => ({name: t.name, meta: t.meta, n: (t.x || []).length})),
  traces: (gd.data || []).length,
  svg: !!gd.querySelector('.main-svg'),
})))"""


NO_CHROMIUM = "no Chromium found (apt-get install chromium, or set INFERSWEEP_CHROMIUM)"


class BrowserUnavailable(InfersweepError, RuntimeError):
    """No Chromium binary on this machine (or the Playwright package is missing)."""

    kind = "browser_unavailable"
    transient = False


class BrowserError(InfersweepError, RuntimeError):
    """Chromium did not start, or a browser step failed or timed out."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary (INFERSWEEP_CHROMIUM overrides), or None."""
    override = os.environ.get("INFERSWEEP_CHROMIUM")
    if override:
        return override if Path(override).exists() else None
    for cand in CHROMIUM_CANDIDATES:
        if Path(cand).exists():
            return cand
    found = shutil.which("chromium")
    return found


def _playwright_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"the playwright package is not importable ({exc}); run make install"
    return None


def unavailable_reason() -> str | None:
    """Why `render_page` cannot run here (no Chromium, no Playwright), or None when it can."""
    if find_chromium() is None:
        return NO_CHROMIUM
    return _playwright_missing()


@dataclass
class RenderResult:
    """What rendering a page produced."""

    png: bytes
    console_errors: list[str] = field(default_factory=list)
    plots_ready: bool = False
    probe: Any = None


class _Deadline:
    """One budget for starting the browser, loading the page and waiting for the plots (each of those
    steps gets what is left of it, in milliseconds)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left_ms(self, what: str) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise BrowserError(f"{what}: the {self.seconds:.0f} s rendering deadline passed")
        return left * 1000.0

    def passed(self) -> bool:
        return time.monotonic() >= self.end


def _evaluate(page: Page, expression: str, timeout_ms: float) -> Any:
    """Value of a JS expression, within `timeout_ms`.

    `page.evaluate` has no timeout (a page stuck in a script would hang us), `wait_for_function` has one.
    Wrapping the value in a JSON string makes it always truthy (so the first poll returns it) and primitive
    (so reading it back does not touch the page again).
    """
    handle = page.wait_for_function(f"JSON.stringify([{expression}])", polling=100, timeout=timeout_ms)
    return json.loads(handle.json_value())[0]


def _render(
    url: str, *, chromium: str, width: int, height: int, timeout: float, clip_selector: str | None,
    full_page: bool,
) -> RenderResult:
    from playwright.sync_api import ConsoleMessage, sync_playwright
    from playwright.sync_api import Error as PlaywrightError

    deadline = _Deadline(timeout)  # start, load and wait for the plots
    step_ms = timeout * 1000.0  # then each page script and the screenshot get their own timeout
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        # Chromium's own error-level log entries (a script or stylesheet that failed to load) arrive here too.
        if msg.type in {"error", "assert"}:
            errors.append(f"console.{msg.type}: {msg.text}")

    profile = Path(tempfile.mkdtemp(prefix="infersweep-chromium-"))
    try:
        with sync_playwright() as pw:
            try:
                context = pw.chromium.launch_persistent_context(
                    str(profile), executable_path=chromium, headless=True, args=list(CHROMIUM_FLAGS),
                    viewport={"width": width, "height": height}, device_scale_factor=1,
                    timeout=deadline.left_ms("starting chromium"),
                )
            except PlaywrightError as exc:
                raise BrowserError(f"chromium ({chromium}) did not start: {exc.message}") from exc
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.on("pageerror", lambda exc: errors.append(f"Uncaught: {exc.name}: {exc.message}"))
                page.on("console", on_console)
                page.on("crash", lambda _page: errors.append("the page crashed"))
                try:
                    page.goto(url, wait_until="load", timeout=deadline.left_ms(f"loading {url}"))
                except PlaywrightError as exc:
                    raise BrowserError(f"{url} did not finish loading in {timeout:.0f} s: {exc.message}") from exc
                ready = False
                while not deadline.passed():
                    ready = bool(_evaluate(page, PLOTS_READY, step_ms))
                    # After the load event an uncaught error means the plots will never draw: stop waiting.
                    if ready or errors:
                        break
                    page.wait_for_timeout(200)
                probe = json.loads(_evaluate(page, FRONTIER_PROBE, step_ms) or "null")
                if clip_selector:
                    if not _evaluate(page, f"document.querySelector({json.dumps(clip_selector)}) !== null", step_ms):
                        raise BrowserError(f"no element matches {clip_selector!r}")
                    png = page.locator(clip_selector).first.screenshot(type="png", timeout=step_ms)
                else:
                    png = page.screenshot(type="png", full_page=full_page, timeout=step_ms)
                return RenderResult(png=png, console_errors=list(errors), plots_ready=ready, probe=probe)
            except PlaywrightError as exc:
                raise BrowserError(f"rendering {url} failed: {exc.message}") from exc
            finally:
                # Closing the context ends the browser; if it is already gone, leaving sync_playwright()
                # stops the driver, which kills the browser's process group anyway.
                with contextlib.suppress(PlaywrightError):
                    context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def render_page(
    path_or_url: str | Path, *, width: int = 1400, height: int = 1000, timeout: float = 60.0,
    clip_selector: str | None = None, full_page: bool = False, chromium: str | None = None,
) -> RenderResult:
    """Open a file or URL in headless Chromium, wait for the plots, and screenshot it.

    `clip_selector` screenshots just that element (e.g. the first frontier chart). Raises
    BrowserUnavailable when no Chromium (or no Playwright) is installed and BrowserError when rendering
    fails or runs past `timeout` seconds.
    """
    binary = chromium or find_chromium()
    if binary is None:
        raise BrowserUnavailable(NO_CHROMIUM)
    missing = _playwright_missing()
    if missing:
        raise BrowserUnavailable(missing)
    url = str(path_or_url)
    if "://" not in url:
        url = Path(url).resolve().as_uri()
    return _render(url, chromium=binary, width=width, height=height, timeout=timeout,
                   clip_selector=clip_selector, full_page=full_page)


def png_info(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the image data) of a PNG; a blank image has very few."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, bytearray()
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return width, height, len(set(zlib.decompress(bytes(idat))))
