"""History routes of the report web app (registered on it by `report.web.create_app`).

- `GET /history` — the config keys in the store, each linking to its history.
- `GET /history?config_key=K[&since=DATE][&level=X…]` — K's history page (see `report.history`).
- `GET /api/history?config_key=K[&since=DATE][&level=X…]` — the same as JSON (the `History` model).

Same authentication as every other route: a config key's DAG id is the key itself, and its history is only
shown to users allowed to read that DAG (runs of other DAGs that carry the key are filtered the same way).
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from infersweep.report.web import DagAccess, _airflow_user, _PageCache


def _since(text: str | None) -> datetime | None:
    from infersweep.report.history import parse_since

    if not text:
        return None
    try:
        return parse_since(text)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc).replace("--since", "since")) from None


def register_history_routes(app: FastAPI, *, db_url: str | None = None) -> None:
    """Add `/history` and `/api/history` to the report app (`db_url=None`: the store as resolved everywhere)."""
    from infersweep.report.history import build_history, config_keys, history_runs
    from infersweep.report.history_html import render_history
    from infersweep.report.html import _e, page
    from infersweep.report.store_source import data_version, load_run_refs
    from infersweep.store.db import get_engine

    pages = _PageCache()
    user_dep = Depends(_airflow_user)

    def index(request: Request, access: DagAccess, *, missing: str | None = None) -> HTMLResponse:
        base = request.url_for("history_page").path
        rows = "".join(
            f'<tr><td class="l"><a href="{_e(base + "?" + urlencode({"config_key": key}))}">{_e(key)}</a></td>'
            f'<td>{n}</td><td class="l">{_e(newest.strftime("%Y-%m-%d %H:%M") if newest else "")}</td></tr>'
            for key, n, newest in config_keys(get_engine(db_url)) if access.can_read(key)
        )
        note = f'<p class="bad">No results for config key {_e(missing)}.</p>' if missing else ""
        body = (f"<h1>infersweep sweep history</h1>{note}<p class=\"muted\">Pick a config key to see how its "
                "frontier moved across runs.</p><table id=\"config-keys\"><thead><tr><th class=\"l\">config key</th>"
                f"<th>runs</th><th class=\"l\">newest run</th></tr></thead><tbody>{rows}</tbody></table>")
        return HTMLResponse(page("infersweep sweep history", body, plotly_js=""), status_code=404 if missing else 200)

    def selection(config_key: str, since: str | None, user: Any) -> tuple[Any, list[Any], list[Any], datetime | None]:
        access = DagAccess(user)
        access.require(config_key)
        since_dt = _since(since)
        engine = get_engine(db_url)
        pairs = [(ref, run) for ref, run in history_runs(engine, config_key, since=since_dt)
                 if access.can_read(ref.dag_id)]
        return engine, [ref for ref, _ in pairs], [run for _, run in pairs], since_dt

    @app.get("/history", response_class=HTMLResponse, name="history_page")
    def history_page(
        request: Request, config_key: str | None = Query(None), since: str | None = Query(None),
        level: list[float] | None = Query(None), user: Any = user_dep,
    ) -> HTMLResponse:
        if not config_key:
            return index(request, DagAccess(user))
        engine, refs, runs, since_dt = selection(config_key, since, user)
        if not refs:
            return index(request, DagAccess(user), missing=config_key)
        plotly = request.url_for("plotly_js").path
        levels = tuple(sorted(set(level or ())))
        key = ("history", config_key, since_dt, levels, tuple(r.pk for r in refs), data_version(engine, refs), plotly)
        links = (f'<p><a href="{html.escape(request.url_for("report").path + "?" + urlencode({"dag_id": config_key}))}">'
                 f'Newest report of {_e(config_key)}</a> · <a href="{html.escape(request.url_for("runs").path + "?" + urlencode({"dag_id": config_key}))}">'
                 f'Its runs</a> · <a href="{html.escape(request.url_for("history_page").path)}">All config keys</a></p>')
        body = pages.get_or_build(key, lambda: render_history(
            build_history(load_run_refs(engine, refs), config_key=config_key, runs=runs, levels=levels or None,
                          since=since_dt),
            plotly_js=plotly, header_html=links,
        ))
        return HTMLResponse(body)

    @app.get("/api/history")
    def history_api(config_key: str = Query(...), since: str | None = Query(None),
                    level: list[float] | None = Query(None), user: Any = user_dep) -> JSONResponse:
        engine, refs, runs, since_dt = selection(config_key, since, user)
        if not refs:
            raise HTTPException(status_code=404, detail=f"no results for config key {config_key!r}")
        history = build_history(load_run_refs(engine, refs), config_key=config_key, runs=runs, levels=level or None,
                                since=since_dt)
        return JSONResponse(history.model_dump(mode="json"))
