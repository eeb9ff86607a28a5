"""The Airflow plugin: a valid AirflowPlugin with a FastAPI app that serves reports and run summaries."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infersweep.report.sample import sample_points
from infersweep.report.web import create_app
from tests.report.factories import pt
from tests.report.seed import seed, store_engine

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "infersweep_plugin.py"


@pytest.fixture(scope="module")
def plugin_module():
    spec = importlib.util.spec_from_file_location("infersweep_plugin_under_test", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_plugin_is_a_valid_airflow_plugin_with_a_fastapi_app(plugin_module):
    from airflow.plugins_manager import AirflowPlugin, is_valid_plugin

    cls = plugin_module.InfersweepPlugin
    assert issubclass(cls, AirflowPlugin) and is_valid_plugin(cls)
    (entry,) = cls.fastapi_apps
    assert isinstance(entry["app"], FastAPI)
    assert entry["url_prefix"] == "/infersweep"
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES

    assert not any(entry["url_prefix"].startswith(p) for p in RESERVED_URL_PREFIXES)


def test_external_views_validate_against_airflows_response_model(plugin_module):
    from airflow.api_fastapi.core_api.datamodels.plugins import ExternalViewResponse

    views = [ExternalViewResponse.model_validate(v) for v in plugin_module.InfersweepPlugin.external_views]
    by_dest = {v.destination: v for v in views}
    assert by_dest["nav"].href == "infersweep/"
    assert by_dest["dag"].href == "infersweep/?dag_id={DAG_ID}"  # the UI substitutes the DAG id
    assert len({v.url_route for v in views}) == len(views)


def test_routes_require_an_airflow_login_by_default(plugin_module):
    client = TestClient(plugin_module.InfersweepPlugin.fastapi_apps[0]["app"])
    assert client.get("/health").status_code == 200
    for path in ("/", "/runs", "/api/summary", "/compare?base=a&head=b"):
        assert client.get(path).status_code == 401, path


@pytest.fixture
def client(sqlite_url):
    engine = store_engine(sqlite_url)
    seed(engine, sample_points(seq_lens=((1024, 1024),)))
    seed(engine, [pt(8, run="r1", image="img:a", tput=1000.0), pt(8, run="r2", image="img:b", tput=700.0)])
    with TestClient(create_app(db_url=sqlite_url, auth=False)) as c:
        yield c
    engine.dispose()


def test_latest_report_page_is_built_from_the_store(client):
    res = client.get("/")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    html = res.text
    assert "Pareto frontier" in html and "34/35 green" in html
    assert '<script type="text/javascript" src="/static/plotly.min.js"></script>' in html  # not re-sent per page
    assert "cfg/r2" in html and "cfg/r1" not in html  # newest run of each DAG only
    assert client.get("/").text == html  # cached per data version


def test_dag_and_run_selection(client):
    assert "cfg/r1" in client.get("/", params={"dag_id": "cfg", "run_id": "r1"}).text
    html = client.get("/", params={"dag_id": "llama70b-sample"}).text
    assert "llama70b-sample/" in html and "cfg/r2" not in html
    assert client.get("/", params={"dag_id": "cfg", "run_id": "nope"}).status_code == 404


def test_page_cache_is_keyed_by_the_selection(sqlite_url):
    """One DAG in the store: "/" and "/?dag_id=cfg" pick the same run, yet each keeps its own title (the
    DAG page's "Pareto report" tab must not get the "all sweeps" page built first)."""
    engine = store_engine(sqlite_url)
    seed(engine, [pt(8, run="r1")])
    with TestClient(create_app(db_url=sqlite_url, auth=False)) as c:
        everything = c.get("/").text
        one_dag = c.get("/", params={"dag_id": "cfg"}).text
        one_run = c.get("/", params={"dag_id": "cfg", "run_id": "r1"}).text
        assert c.get("/").text == everything  # still cached per selection and data version
    engine.dispose()
    assert "infersweep: all sweeps" in everything and "newest run of each sweep DAG" in everything
    assert "infersweep: cfg" in one_dag and "newest run of cfg" in one_dag and "all sweeps" not in one_dag
    assert "Source: cfg/r1." in one_run and "newest run" not in one_run


def test_run_summary_json_and_page(client):
    data = client.get("/api/summary").json()
    by_run = {(s["dag_id"], s["run_id"]): s for s in data}
    sample = by_run[("llama70b-sample", "manual__2026-11-27T02:00:00+00:00")]
    assert sample["summary"] == "34/35 green" and sample["failures"] == {"kv_cache_oom": 1}
    assert sample["engine"] == "sim"
    page = client.get("/runs").text
    assert "34/35 green" in page and "/?dag_id=cfg&amp;run_id=r1" in page
    # same start time: the later-inserted run first
    assert [s["run_id"] for s in client.get("/api/summary", params={"dag_id": "cfg"}).json()] == ["r2", "r1"]


def test_compare_page_and_plotly_asset(client):
    res = client.get("/compare", params={"base": "img:a", "head": "img:b"})
    assert res.status_code == 200 and "gate FAIL" in res.text and "regression" in res.text
    assert client.get("/compare", params={"base": "zzz", "head": "img:b"}).status_code == 404
    assert client.get("/compare", params={"base": "/etc/passwd", "head": "img:b"}).status_code == 404  # never a file
    js = client.get("/static/plotly.min.js")
    assert js.status_code == 200 and "max-age" in js.headers["cache-control"] and len(js.content) > 1_000_000


def test_unreadable_store_is_a_503_with_a_reason(tmp_path):
    with TestClient(create_app(db_url=f"sqlite:///{tmp_path / 'empty.sqlite'}", auth=False)) as c:
        res = c.get("/api/summary")
    assert res.status_code == 503 and "results store unavailable" in res.json()["detail"]


def test_results_are_filtered_by_the_users_dag_read_access(sqlite_url, monkeypatch):
    """With auth on, a valid token is resolved by Airflow and each DAG is checked with the auth manager."""
    import airflow.api_fastapi.app as af_app
    import airflow.api_fastapi.core_api.security as security

    async def resolve(token):
        if token != "good":
            from fastapi import HTTPException

            raise HTTPException(status_code=403, detail="Invalid JWT token")
        return "alice"

    class AuthManager:
        def is_authorized_dag(self, *, method, details, user, access_entity=None):
            return method == "GET" and user == "alice" and details.id == "cfg"

    monkeypatch.setattr(security, "resolve_user_from_token", resolve)
    monkeypatch.setattr(af_app, "get_auth_manager", lambda: AuthManager())
    engine = store_engine(sqlite_url)
    seed(engine, sample_points(seq_lens=((1024, 1024),)))
    seed(engine, [pt(8, run="r1"), pt(8, run="r2", image="img:b")])
    with TestClient(create_app(db_url=sqlite_url, auth=True)) as c:
        bearer = {"Authorization": "Bearer good"}
        assert c.get("/api/summary", headers={"Authorization": "Bearer bad"}).status_code == 403
        assert {s["dag_id"] for s in c.get("/api/summary", headers=bearer).json()} == {"cfg"}
        c.cookies.set("_token", "good")  # the UI's session cookie works like the header
        html = c.get("/").text
        assert "cfg/r2" in html and "llama70b-sample" not in html
        assert c.get("/", params={"dag_id": "llama70b-sample"}).status_code == 403
        assert c.get("/compare", params={"base": "llama70b-sample/manual__2026-11-27T02:00:00+00:00",
                                         "head": "cfg/r2"}).status_code == 403
    engine.dispose()
