"""Airflow 3 plugin: infersweep's Pareto reports and run summaries inside the Airflow UI.

- A FastAPI app mounted at `/infersweep` on the API server (see `infersweep.report.web` for routes).
- A top-level navigation entry "Sweep reports" (Browse menu), opening `/infersweep/` in the UI's frame.
- A "Pareto report" tab on every DAG page, opening `/infersweep/?dag_id=<that DAG>`.
- "Sweep history" (Browse menu: the config keys, each linking to its history) and a "Sweep history" tab on
  every DAG page (`/infersweep/history?config_key=<that DAG>`: its frontier across runs and images).

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
    # History entries first, so a lookup by destination (last one wins, as in tests/plugins) still finds the
    # report entries.
    external_views = [  # noqa: RUF012
        {
            "name": "Sweep history",
            "href": "infersweep/history",
            "url_route": "infersweep-history",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Sweep history",
            "href": "infersweep/history?config_key={DAG_ID}",
            "url_route": "infersweep-dag-history",
            "destination": "dag",
        },
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
