"""Every DAG file imports cleanly with no DB, network or hub work at parse time, and the sweep DAGs
have the shape the product promises (mapped serve-group chain, setup/teardown, pools, tags, params)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dagbag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.setenv("INFERSWEEP_CONFIGS", str(ROOT / "configs"))
    monkeypatch.setenv("INFERSWEEP_DB_URL", f"sqlite:///{tmp_path}/never-touched.sqlite")

    def _no_network(*args, **kwargs):
        raise AssertionError(f"network access at DAG parse time: {args!r}")

    # Parse time must not open sockets (DB, hub, docker) — the DagBag must still load.
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    from infersweep.airflow.dagfiles import load_dagbag

    return load_dagbag(ROOT / "dags")


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}, dagbag.import_errors
    assert dagbag.dags, "no DAGs were loaded from dags/"


def test_sweep_dags_have_the_serve_group_chain(dagbag) -> None:
    from infersweep.airflow.report_dag import REPORT_DAG_ID

    sweeps = {k: d for k, d in dagbag.dags.items() if k != REPORT_DAG_ID}
    assert sweeps
    for dag_id, dag in sweeps.items():
        ids = set(dag.task_dict)
        chain = {f"serve_group.{t}" for t in ("download", "serve", "warmup", "benchmark", "evaluate", "stop")}
        assert {"plan", "finalize"} | chain <= ids, dag_id
        assert dag.task_dict["serve_group.serve"].is_setup
        assert dag.task_dict["serve_group.stop"].is_teardown
        assert dag.task_dict["serve_group.serve"].pool.startswith("infersweep-")
        assert dag.catchup is False and dag.max_active_runs == 1
        assert dag.tags and dag.doc_md and "curl" in dag.doc_md
        assert {"seq_lens", "tp", "ep", "concs", "image", "engine", "force", "reuse_run_id", "eval",
                "dry_run"} <= set(dag.params)
        # Mapped chain, not unrolled: a fixed, small task count whatever the number of serve groups.
        assert len(dag.task_dict) == 9, sorted(dag.task_dict)
        # The verdict follows finalize and is the leaf that decides the run's state (issue 18).
        assert dag.task_dict["verdict"].upstream_task_ids == {"finalize"}
        assert [t.task_id for t in dag.leaves if not t.is_teardown] == ["verdict"]
        assert dag.task_dict["serve_group.benchmark"].retry_policy is not None


def test_report_dag_is_scheduled_on_the_results_asset(dagbag) -> None:
    from infersweep.airflow.report_dag import REPORT_DAG_ID

    report = dagbag.dags[REPORT_DAG_ID]
    assert "infersweep://results" in str(report.timetable.asset_condition)
    assert report.is_paused_upon_creation is False
