"""The report web app (FastAPI), mounted into Airflow's API server by `plugins/infersweep_plugin.py`.

Routes, relative to the mount point (`/infersweep` in Airflow):

- `GET /` — the Pareto report of the newest run of each sweep DAG; `?dag_id=K` for one DAG (the sweep
  DAGs' docs link here), `&run_id=R` for a specific run.
- `GET /runs` — run summaries ("53/55 green", failures by class) with links to each run's report.
- `GET /compare?base=…&head=…` — frontier overlay and per-point deltas with the gate's verdicts.
- `GET /api/summary` — the run summaries as JSON (`?dag_id=K&limit=N`).
- `GET /static/plotly.min.js` — plotly.js, served once and cached by the browser (the pages stay offline:
  nothing is fetched from a CDN).
- `GET /health`.

Pages are rebuilt from the results store on request and cached per data version (row count + newest
update of the selected runs), so a finished run shows up on the next reload.

Authentication: inside Airflow every route requires a valid Airflow JWT (the UI's `_token` cookie or a
`Bearer` header), and results of a DAG are only shown to users allowed to read that DAG.
"""

from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

ENV_AUTH = "INFERSWEEP_PLUGIN_AUTH"
_CACHE_SIZE = 16


class _PageCache:
    """A small thread-safe LRU of rendered pages keyed by (selection, data version)."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._items: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get_or_build(self, key: tuple[Any, ...], build: Callable[[], str]) -> str:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        page = build()  # outside the lock: a slow render must not block other requests
        with self._lock:
            self._items[key] = page
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return page


@cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


async def _airflow_user(request: Request) -> Any:
    """The Airflow user behind the request (JWT from `Bearer` header or the UI's cookie); 401/403 otherwise."""
    if not request.app.state.auth:
        return None
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    return await resolve_user_from_token(token)


class DagAccess:
    """Whether the request's user may read a DAG, asked of Airflow's auth manager once per DAG id.

    Asked per DAG id (not via the list of DAGs in the metadata DB) so results of a DAG that no longer
    exists, or was run elsewhere, stay visible to users with read access to all DAGs.
    """

    def __init__(self, user: Any) -> None:
        self.user = user
        self._seen: dict[str, bool] = {}

    def can_read(self, dag_id: str) -> bool:
        """True when auth is off or the auth manager allows GET on this DAG."""
        if self.user is None:
            return True
        if dag_id not in self._seen:
            from airflow.api_fastapi.app import get_auth_manager
            from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

            self._seen[dag_id] = bool(
                get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=self.user)
            )
        return self._seen[dag_id]

    def require(self, dag_id: str | None) -> None:
        """403 unless the user may read `dag_id` (no-op for None)."""
        if dag_id and not self.can_read(dag_id):
            raise HTTPException(status_code=403, detail=f"not allowed to read DAG {dag_id!r}")


def create_app(*, db_url: str | None = None, auth: bool | None = None) -> FastAPI:
    """The app. `auth=None` reads INFERSWEEP_PLUGIN_AUTH (default on: Airflow JWT required)."""
    from infersweep.report.html import page, render_compare, render_report, summary_table
    from infersweep.report.service import compare_and_gate
    from infersweep.report.store_source import (
        SelectorNotFound,
        data_version,
        find_runs,
        latest_runs,
        load_run_refs,
        run_summaries,
    )
    from infersweep.store.db import get_engine

    if auth is None:
        auth = os.environ.get(ENV_AUTH, "1").lower() not in {"0", "false", "no", "off"}
    app = FastAPI(title="infersweep reports", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.auth = auth
    pages = _PageCache()

    @app.exception_handler(SQLAlchemyError)
    async def store_unavailable(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        # A down or unmigrated store is a 503 with a reason, not a stack trace (the URL stays masked).
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return JSONResponse({"detail": f"results store unavailable: {detail}"}, status_code=503)
    user_dep = Depends(_airflow_user)

    def plotly_url(request: Request) -> str:
        # Path only: behind a proxy the host and scheme the app sees may not be the browser's.
        return request.url_for("plotly_js").path

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/static/plotly.min.js", name="plotly_js")
    def plotly_js() -> Response:
        return Response(_plotly_js(), media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/", response_class=HTMLResponse)
    def report(
        request: Request, dag_id: str | None = Query(None), run_id: str | None = Query(None), user: Any = user_dep,
    ) -> HTMLResponse:
        access = DagAccess(user)
        access.require(dag_id)
        engine = get_engine(db_url)
        if run_id:
            refs = find_runs(engine, f"{dag_id}/{run_id}" if dag_id else run_id)
            if not refs:
                raise HTTPException(status_code=404, detail=f"no run {run_id!r}" + (f" of {dag_id!r}" if dag_id else ""))
        else:
            refs = latest_runs(engine, [dag_id] if dag_id else ())
        refs = [r for r in refs if access.can_read(r.dag_id)]
        # The selection is part of the key: with one DAG in the store, "/" and "/?dag_id=K" pick the same
        # runs but title them differently ("all sweeps" vs K), so one must not be served for the other.
        key = ("report", dag_id, run_id, tuple(r.pk for r in refs), data_version(engine, refs), plotly_url(request))
        scope = ", ".join(r.label for r in refs) if run_id else (f"newest run of {dag_id}" if dag_id else
                                                                    "newest run of each sweep DAG")
        body = pages.get_or_build(key, lambda: render_report(
            load_run_refs(engine, refs), title=f"infersweep: {dag_id or 'all sweeps'}",
            summaries=run_summaries(engine, runs={(r.dag_id, r.run_id) for r in refs}),
            subtitle=f"Source: {scope}.", plotly_js=plotly_url(request),
            header_html=f'<p><a href="{html.escape(request.url_for("runs").path)}">All runs and their summaries</a></p>',
        ))
        return HTMLResponse(body)

    @app.get("/runs", response_class=HTMLResponse)
    def runs(request: Request, dag_id: str | None = Query(None), limit: int = Query(100, ge=1, le=1000),
             user: Any = user_dep) -> HTMLResponse:
        access = DagAccess(user)
        access.require(dag_id)
        summaries = [s for s in run_summaries(get_engine(db_url), dag_id=dag_id, limit=limit)
                     if access.can_read(s.dag_id)]
        base = request.url_for("report").path

        def link(s: Any) -> str:
            from urllib.parse import urlencode

            return f"{base}?{urlencode({'dag_id': s.dag_id, 'run_id': s.run_id})}"

        body = (f"<h1>infersweep runs{': ' + html.escape(dag_id) if dag_id else ''}</h1>"
                + summary_table(summaries, link=link))
        return HTMLResponse(page("infersweep runs", body, plotly_js=""))

    @app.get("/api/summary")
    def summary(dag_id: str | None = Query(None), limit: int = Query(100, ge=1, le=1000),
                user: Any = user_dep) -> JSONResponse:
        access = DagAccess(user)
        access.require(dag_id)
        summaries = run_summaries(get_engine(db_url), dag_id=dag_id, limit=limit)
        return JSONResponse([s.to_dict() for s in summaries if access.can_read(s.dag_id)])

    @app.get("/compare", response_class=HTMLResponse)
    def compare_page(request: Request, base: str = Query(...), head: str = Query(...),
                     noise_floor: float = Query(0.05, ge=0.0, le=1.0), user: Any = user_dep) -> HTMLResponse:
        access = DagAccess(user)
        try:
            comparison, result = compare_and_gate(base, head, db_url=db_url, floor=noise_floor, allow_files=False)
        except SelectorNotFound as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        dags = {p.dag_id for pair in comparison.pairs for p in (*pair.base, *pair.head)}
        if not all(access.can_read(d) for d in dags):
            raise HTTPException(status_code=403, detail="the comparison includes DAGs you may not read")
        return HTMLResponse(render_compare(comparison, result, plotly_js=plotly_url(request)))

    from infersweep.report.history_web import register_history_routes  # /history and /api/history
    register_history_routes(app, db_url=db_url)
    return app
