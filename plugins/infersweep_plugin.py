"""Airflow 3 plugin: infersweep's Pareto reports and run summaries inside the Airflow UI.

- A FastAPI app mounted at `/infersweep` on the API server (see `infersweep.report.web` for routes).
- A top-level navigation entry "Sweep reports" (Browse menu), opening `/infersweep/` in the UI's frame.
- A "Pareto report" tab on every DAG page, opening `/infersweep/?dag_id=<that DAG>`.

The sweep DAGs' docs link to `/infersweep/?dag_id=<config key>`. Every route requires an Airflow login
(set INFERSWEEP_PLUGIN_AUTH=0 only for a UI without auth, e.g. a local demo).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from infersweep.report.web import create_app

URL_PREFIX = "/infersweep"


class InfersweepPlugin(AirflowPlugin):
    """Serves the latest report HTML and the run summaries."""

    name = "infersweep"
    fastapi_apps = [  # noqa: RUF012 (AirflowPlugin declares these as class-level lists)
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "infersweep reports"},
    ]
    # hrefs are relative (no leading slash): the UI resolves them against its <base href>, so they keep
    # working when Airflow is served under a sub-path. `{DAG_ID}` is filled in by the UI on DAG pages.
    external_views = [  # noqa: RUF012
        {
            "name": "Sweep reports",
            "href": "infersweep/",
            "url_route": "infersweep-reports",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Pareto report",
            "href": "infersweep/?dag_id={DAG_ID}",
            "url_route": "infersweep-dag-report",
            "destination": "dag",
        },
    ]
