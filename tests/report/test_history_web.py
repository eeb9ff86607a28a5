"""The history routes of the plugin's app (`/history`, `/api/history`), their auth, the plugin's entries, and
the page rendered by the app, served over HTTP, in headless Chromium."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient

from infersweep.report.browser import png_info, render_page, unavailable_reason
from infersweep.report.history import History
from infersweep.report.web import create_app
from tests.plugins.test_infersweep_plugin import plugin_module  # noqa: F401 (the plugin file, loaded once)

from .factories import pt
from .history_sample import CONFIG_KEY, NIGHTS, V10, V11, V12, seed_history
from .seed import seed, store_engine

BROWSER = unavailable_reason()


@pytest.fixture(scope="module")
def db_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('history-web') / 'results.sqlite'}"
    engine = store_engine(url)
    seed_history(engine)
    seed(engine, [pt(8, run="r1"), pt(16, run="r1")])  # a second config key, `cfg`
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def client(db_url):
    with TestClient(create_app(db_url=db_url, auth=False)) as c:
        yield c


def test_without_a_config_key_the_page_lists_the_keys(client):
    res = client.get("/history")
    assert res.status_code == 200
    assert f'href="/history?config_key={CONFIG_KEY}"' in res.text and 'href="/history?config_key=cfg"' in res.text
    assert "<td>7</td>" in res.text  # runs of the sample key


def test_history_page_of_a_config_key(client):
    res = client.get("/history", params={"config_key": CONFIG_KEY})
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    page = res.text
    assert '<script type="text/javascript" src="/static/plotly.min.js"></script>' in page
    for i in range(3):
        assert f'id="history-{i}-levels"' in page and f'id="history-{i}-frontiers"' in page
    assert 'id="regressions"' in page and "Regressions (" in page and V12 in page
    assert f'href="/?dag_id={CONFIG_KEY}"' in page and f'href="/runs?dag_id={CONFIG_KEY}"' in page
    assert client.get("/history", params={"config_key": CONFIG_KEY}).text == page  # cached per data version
    recent = client.get("/history", params={"config_key": CONFIG_KEY, "since": "2026-11-25"}).text
    assert "2 runs since 2026-11-25" in recent and V10 not in recent


def test_history_api_is_the_model(client):
    res = client.get("/api/history", params={"config_key": CONFIG_KEY, "level": [30, 60]})
    assert res.status_code == 200
    history = History.model_validate(res.json())
    assert [r.run_id for r in history.runs] == [n[0] for n in NIGHTS]
    assert history.runs[2].backfilled and {r.image for r in history.runs} == {V10, V11, V12}
    assert all(t.levels == [30.0, 60.0] for t in history.topologies)


def test_unknown_keys_and_bad_dates(client):
    res = client.get("/history", params={"config_key": "nope"})
    assert res.status_code == 404 and "No results for config key nope" in res.text
    assert f"config_key={CONFIG_KEY}" in res.text  # the way out: the keys that exist
    assert client.get("/api/history", params={"config_key": "nope"}).status_code == 404
    res = client.get("/api/history", params={"config_key": CONFIG_KEY, "since": "soon"})
    assert res.status_code == 422 and "since 'soon' is not a date" in res.json()["detail"]


def test_plugin_entries_and_login(plugin_module):  # noqa: F811 (pytest fixture)
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    views = [ExternalViewResponse.model_validate(v) for v in plugin_module.InfersweepPlugin.external_views]
    history = {v.destination: v.href for v in views if v.name == "Sweep history"}
    assert history == {"nav": "infersweep/history", "dag": "infersweep/history?config_key={DAG_ID}"}
    client = TestClient(plugin_module.InfersweepPlugin.fastapi_apps[0]["app"])
    for path in ("/history", f"/history?config_key={CONFIG_KEY}", f"/api/history?config_key={CONFIG_KEY}"):
        assert client.get(path).status_code == 401, path


def test_history_is_shown_only_to_users_who_may_read_the_dag(db_url, monkeypatch):
    import airflow.api_fastapi.app as af_app
    import airflow.api_fastapi.core_api.security as security

    async def resolve(token):
        return "alice"

    class AuthManager:
        def is_authorized_dag(self, *, method, details, user, access_entity=None):
            return method == "GET" and details.id == "cfg"

    monkeypatch.setattr(security, "resolve_user_from_token", resolve)
    monkeypatch.setattr(af_app, "get_auth_manager", lambda: AuthManager())
    with TestClient(create_app(db_url=db_url, auth=True)) as c:
        bearer = {"Authorization": "Bearer any"}
        assert c.get("/history", params={"config_key": CONFIG_KEY}, headers=bearer).status_code == 403
        assert c.get("/api/history", params={"config_key": CONFIG_KEY}, headers=bearer).status_code == 403
        index = c.get("/history", headers=bearer).text
        assert "config_key=cfg" in index and CONFIG_KEY not in index
        assert c.get("/api/history", params={"config_key": "cfg"}, headers=bearer).json()["config_key"] == "cfg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(db_url):
    """The app on a real HTTP port (uvicorn in a thread), mounted under /infersweep as in Airflow's API server,
    which also answers the browser's favicon request."""
    import uvicorn
    from fastapi import FastAPI, Response

    host = FastAPI()

    @host.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    host.mount("/infersweep", create_app(db_url=db_url, auth=False))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(host, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start serving the app within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/infersweep"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.integration
@pytest.mark.skipif(BROWSER is not None, reason=f"cannot render in a browser here: {BROWSER}")
def test_history_page_renders_in_chromium_without_console_errors(served):
    result = render_page(f"{served}/history?config_key={CONFIG_KEY}", width=1500, height=1000, full_page=True)
    assert result.console_errors == []
    assert result.plots_ready
    charts = {c["id"]: c for c in result.probe}
    assert sorted(charts) == sorted(f"history-{i}-{kind}" for i in range(3) for kind in ("levels", "frontiers"))
    for i in range(3):
        assert charts[f"history-{i}-levels"]["svg"] and charts[f"history-{i}-frontiers"]["svg"]
        # one frontier per run (7 runs over 3 images), each with several vertices
        frontiers = charts[f"history-{i}-frontiers"]["frontier"]
        assert len(frontiers) == len(NIGHTS) and all(f["n"] >= 3 for f in frontiers)
        assert frontiers[2]["name"].endswith("(backfill)")
    width, height, distinct = png_info(result.png)
    assert width >= 1400 and height > 1000 and distinct > 32
