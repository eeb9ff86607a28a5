"""The plan task with today's InferenceX fields: agentic rows are listed as planned-not-executed (run row, run
summary, report), layout Params filter on pp/dcp/pcp, and router reaches the stored group. No Airflow run needed."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from infersweep.airflow.context import RunContext

KEY = "m-fp8-h200-vllm"
SWEEP = textwrap.dedent(f"""
    sweep: layouts
    engine: sim
    runners: runners.yaml
    entries:
      {KEY}:
        image: vllm/vllm-openai:v0.11.0
        model: meta-llama/Llama-3.1-8B-Instruct
        model-prefix: llama3.1-8b
        runner: h200
        precision: fp8
        framework: vllm
        multinode: false
        scenarios:
          fixed-seq-len:
          - isl: 1024
            osl: 1024
            search-space:
            - {{ tp: 4, conc-list: [1, 2] }}
            - {{ tp: 4, pp: 2, conc-list: [1, 2], router: {{ name: vllm-router, version: "0.1.14" }} }}
          agentic-coding:
          - dram-utilization: 0.5
            search-space:
            - {{ tp: 4, kv-offloading: dram, kv-offload-backend: {{ name: lmcache }}, conc-list: [4, 8] }}
    inventory:
      h200:
      - {{ name: n0, gpus: 8, gpu-memory-gb: 141 }}
""")
RUNNERS = "labels: {h200: [h200_0]}\nhardware: {h200: {available-cpu-dram-mib: 1998848, gpus-per-node: 8}}\n"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    (tmp_path / "runners.yaml").write_text(RUNNERS)
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    monkeypatch.setenv("INFERSWEEP_CONFIGS", str(tmp_path / "sweep.yaml"))
    monkeypatch.setenv("INFERSWEEP_DB_URL", url)
    monkeypatch.setenv("INFERSWEEP_WORK_DIR", str(tmp_path / "work"))
    return {"url": url}


def _dag_params() -> dict[str, Any]:
    from infersweep.airflow.factory import build_dags
    from infersweep.airflow.settings import AirflowSettings
    from infersweep.config.sweep import load_sweep

    dag = build_dags(load_sweep(list(AirflowSettings.from_env().config_paths)))[KEY]
    return {k: dag.params[k] for k in dag.params}


def _plan(params: dict[str, Any], run_id: str) -> list[Any]:
    from infersweep.airflow.planning import plan_run

    return plan_run(KEY, RunContext(dag_id=KEY, run_id=run_id, task_id="plan", params=params))


def test_agentic_rows_are_recorded_as_planned_not_executed(env: dict[str, Any]) -> None:
    from infersweep.report.html import summary_table
    from infersweep.report.store_source import run_summaries
    from infersweep.store.db import make_engine

    work = _plan({**_dag_params(), "dry_run": True}, "manual__agentic")
    assert work == []
    engine = make_engine(env["url"])
    (summary,) = run_summaries(engine, dag_id=KEY)
    assert summary.not_executed == {"agentic-coding": 2}
    html = summary_table([summary])
    assert "agentic-coding: 2 planned, not executed" in html
    with create_engine(env["url"]).connect() as conn:
        from infersweep.store.models import Run

        (row,) = conn.execute(select(Run.tbl().c.not_executed)).all()
    assert row[0]["agentic-coding"]["exp-names"] == ["llama3.1-8b_tp4_conc4_kvdram-lmcache",
                                                     "llama3.1-8b_tp4_conc8_kvdram-lmcache"]


def test_pp_is_a_form_filter_and_router_is_stored(env: dict[str, Any]) -> None:
    from infersweep.store.models import ServeGroupRow

    params = _dag_params()
    # The key has a PP2 layout, so the form offers pp; dcp/pcp are all 1 here and stay off the form.
    assert "pp" in params and "dcp_size" not in params and "pcp_size" not in params
    work = _plan({**params, "pp": [2], "dry_run": True}, "manual__pp2")
    assert work == []
    with create_engine(env["url"]).connect() as conn:
        t = ServeGroupRow.tbl()
        rows = conn.execute(select(t.c.tp, t.c.pp, t.c.router, t.c.concs)).all()
    # Only the PP2 group was planned; it keeps its router.
    assert [(r.tp, r.pp, r.router) for r in rows] == [(4, 2, {"name": "vllm-router", "version": "0.1.14"})]


def test_layout_conf_keys_are_validated(env: dict[str, Any]) -> None:
    from infersweep.faults.errors import ClassifiedError

    with pytest.raises(ClassifiedError) as info:
        _plan({**_dag_params(), "pcp_size": [0]}, "manual__bad")
    assert "pcp_size" in str(info.value)
