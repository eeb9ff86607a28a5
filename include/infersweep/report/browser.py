"""Render a report page in headless Chromium: screenshot, console errors, and DOM/JS checks.

Chromium is driven through the DevTools protocol (a websocket, via aiohttp) rather than the one-shot
`--screenshot` flag, because the protocol reports uncaught exceptions and console errors precisely and
lets us wait until plotly has drawn every chart before taking the picture.

The browser runs in its own process group with a throwaway profile, no network services (sync,
component updates, background networking off) and a deadline on every step; it is always killed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
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


class BrowserUnavailable(RuntimeError):
    """No Chromium binary on this machine."""


class BrowserError(RuntimeError):
    """Chromium did not start, or a DevTools step failed or timed out."""


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


@dataclass
class RenderResult:
    """What rendering a page produced."""

    png: bytes
    console_errors: list[str] = field(default_factory=list)
    plots_ready: bool = False
    probe: Any = None


class _CDP:
    """A minimal DevTools-protocol client: numbered commands, replies matched by id, events collected."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(data)
            elif "method" in data:
                self.events.append(data)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BrowserError("DevTools connection closed"))

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self.ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise BrowserError(f"DevTools {method} timed out after {timeout:.0f} s") from None
        if "error" in reply:
            raise BrowserError(f"DevTools {method} failed: {reply['error']}")
        return dict(reply.get("result", {}))

    async def evaluate(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"page script failed: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def wait_event(self, method: str) -> bool:
        return any(e["method"] == method for e in self.events)

    async def close(self) -> None:
        self._reader.cancel()
        await self.ws.close()


def console_errors(events: list[dict[str, Any]]) -> list[str]:
    """Uncaught exceptions, console.error calls and error-level log entries, as readable lines."""
    out = []
    for e in events:
        p = e.get("params", {})
        if e["method"] == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            desc = d.get("exception", {}).get("description") or d.get("text", "exception")
            out.append(f"Uncaught: {desc} (line {d.get('lineNumber')})")
        elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in {"error", "assert"}:
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            out.append(f"console.{p['type']}: {args}")
        elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            out.append(f"log error ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
    return out


async def _devtools_port(profile: Path, proc: subprocess.Popen[bytes], deadline: float) -> int:
    port_file = profile / "DevToolsActivePort"
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        if proc.poll() is not None:
            raise BrowserError(f"chromium exited early with code {proc.returncode}")
        if port_file.exists():
            first = port_file.read_text().splitlines()[:1]
            if first and first[0].strip().isdigit():
                return int(first[0])
        await asyncio.sleep(0.1)
    raise BrowserError("chromium did not open its DevTools port in time")


async def _render(
    url: str, *, chromium: str, width: int, height: int, timeout: float, clip_selector: str | None,
    full_page: bool,
) -> RenderResult:
    import aiohttp

    profile = Path(tempfile.mkdtemp(prefix="infersweep-chromium-"))
    proc = subprocess.Popen(  # its own session: we kill the whole group, renderers included
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        port = await _devtools_port(profile, proc, deadline)
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with aiohttp.ClientSession(timeout=client_timeout) as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json(content_type=None)
            page = next((t for t in targets if t.get("type") == "page"), None)
            if page is None:
                raise BrowserError("chromium has no page target")
            ws = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
            cdp = _CDP(ws)
            try:
                for domain in ("Page", "Runtime", "Log"):
                    await cdp.call(f"{domain}.enable")
                await cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                               deviceScaleFactor=1, mobile=False)
                await cdp.call("Page.navigate", url=url)
                while not cdp.wait_event("Page.loadEventFired"):
                    if loop.time() > deadline:
                        raise BrowserError(f"{url} did not finish loading in {timeout:.0f} s")
                    await asyncio.sleep(0.1)
                ready = False
                while loop.time() < deadline:
                    ready = bool(await cdp.evaluate(PLOTS_READY))
                    # After the load event an uncaught error means the plots will never draw: stop waiting.
                    if ready or console_errors(cdp.events):
                        break
                    await asyncio.sleep(0.2)
                probe = json.loads(await cdp.evaluate(FRONTIER_PROBE) or "null")
                shot: dict[str, Any] = {"format": "png"}
                if clip_selector:
                    rect = await cdp.evaluate(
                        f"(() => {{ const e = document.querySelector({json.dumps(clip_selector)});"
                        " if (!e) return null; e.scrollIntoView(); const r = e.getBoundingClientRect();"
                        " return {x: r.left + window.scrollX, y: r.top + window.scrollY,"
                        " width: r.width, height: r.height}; })()"
                    )
                    if rect is None:
                        raise BrowserError(f"no element matches {clip_selector!r}")
                    shot.update(clip={**rect, "scale": 1}, captureBeyondViewport=True)
                elif full_page:
                    shot["captureBeyondViewport"] = True
                png = (await cdp.call("Page.captureScreenshot", timeout=timeout, **shot))["data"]
                return RenderResult(png=base64.b64decode(png), console_errors=console_errors(cdp.events),
                                    plots_ready=ready, probe=probe)
            finally:
                await cdp.close()
    finally:
        _kill_group(proc)
        shutil.rmtree(profile, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    else:  # the main process is gone; make sure no renderer child survived it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def render_page(
    path_or_url: str | Path, *, width: int = 1400, height: int = 1000, timeout: float = 60.0,
    clip_selector: str | None = None, full_page: bool = False, chromium: str | None = None,
) -> RenderResult:
    """Open a file or URL in headless Chromium, wait for the plots, and screenshot it.

    `clip_selector` screenshots just that element (e.g. the first frontier chart). Raises
    BrowserUnavailable when no Chromium is installed and BrowserError when rendering fails.
    """
    binary = chromium or find_chromium()
    if binary is None:
        raise BrowserUnavailable("no Chromium found (apt-get install chromium, or set INFERSWEEP_CHROMIUM)")
    url = str(path_or_url)
    if "://" not in url:
        url = Path(url).resolve().as_uri()
    return asyncio.run(_render(url, chromium=binary, width=width, height=height, timeout=timeout,
                               clip_selector=clip_selector, full_page=full_page))


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
