"""Bad input starts nothing: for every malformed sweep file and every bad trigger param, the Airflow path
stops before a lease, a server or a results row exists.

Three ways in, all in-process and without a network:
- the DAG file is parsed with a bad sweep file: it registers no DAG and its import error (what the UI shows)
  carries the pinned message;
- the sweep file turns bad after the DAG was parsed: the `plan` task fails with the message and writes nothing;
- a trigger's params are bad: Airflow's JSON schema (the check behind the REST API's 400) rejects the form
  keys before a run exists, and the plan task rejects bad advanced run-conf keys before it records anything.

"Nothing" is measured, not assumed: every table of a migrated results DB is counted (0 rows), the work dir
holds no file (no spool, server log or report), and no simulated server process exists. A control case
shows the same footprint check sees a real plan's writes. `test_bad_input_e2e.py` repeats the run-conf and
config cases through `dag.test()` with Airflow's own metadata DB.
"""

from __future__ import annotations

import json
import socket
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, inspect, select, table

from infersweep.airflow.context import RunContext
from infersweep.config.errors import ConfigError
from tests.airflow.harness import ROOT, sim_servers_running
from tests.config.test_bad_configs import CORPUS, EXPECTED

PARAMS = json.loads((CORPUS / "bad_params.json").read_text())
KEY = "bad-key"  # the config key of _ok_sweep.yaml (and of most corpus files)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results DB migrated once; each test gets a copy, so the footprint check counts real tables."""
    from infersweep.store.db import make_engine
    from infersweep.store.migrate import ensure_schema

    path = tmp_path_factory.mktemp("results") / "template.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    ensure_schema(engine)
    engine.dispose()
    return path


@pytest.fixture
def sandbox(tmp_path: Path, template_db: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Environment of an Airflow worker with a results DB and a work dir that both start empty."""
    db = tmp_path / "results.sqlite"
    # The backup API reads the template's WAL too (a plain file copy would miss uncheckpointed pages).
    with closing(sqlite3.connect(template_db)) as src, closing(sqlite3.connect(db)) as dst:
        src.backup(dst)
    work = tmp_path / "work"
    url = f"sqlite:///{db}"
    monkeypatch.setenv("INFERSWEEP_DB_URL", url)
    monkeypatch.setenv("INFERSWEEP_WORK_DIR", str(work))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.chdir(CORPUS)  # messages then name the file as the corpus pins it

    def _no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"bad input must not reach the network: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", _no_network)
    return {"url": url, "work": work}


def footprint(sandbox: dict[str, Any]) -> dict[str, Any]:
    """Rows in every results table, files in the work dir and live simulated servers."""
    engine = create_engine(sandbox["url"])
    try:
        tables = inspect(engine).get_table_names()
        with engine.connect() as conn:
            rows = {t: conn.execute(select(func.count()).select_from(table(t))).scalar_one()
                    for t in tables if t != "alembic_version"}
    finally:
        engine.dispose()
    work: Path = sandbox["work"]
    files = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file()) if work.exists() else []
    return {"rows": {t: n for t, n in rows.items() if n}, "files": files,
            "servers": sim_servers_running(work), "tables": len(rows)}


def assert_nothing_started(sandbox: dict[str, Any]) -> None:
    found = footprint(sandbox)
    assert found["tables"] >= 8, "the results DB should be migrated, so an empty count means something"
    assert found["rows"] == {}, f"rows were written: {found['rows']}"
    assert found["files"] == [], f"files were written: {found['files']}"
    assert found["servers"] == []


def _rc(params: dict[str, Any]) -> RunContext:
    return RunContext(dag_id=KEY, run_id="manual__bad-input", task_id="plan", params=params)


def _ok_dag() -> Any:
    from infersweep.airflow.factory import build_dags
    from infersweep.config.sweep import load_sweep

    return build_dags(load_sweep([CORPUS / "_ok_sweep.yaml"]))[KEY]


def _default_params(dag: Any) -> dict[str, Any]:
    return {k: dag.params[k] for k in dag.params}


def test_corpus_covers_every_kind_of_bad_input() -> None:
    """At least 30 sweep files and 20 params cases, covering the kinds the issue lists."""
    assert len(EXPECTED) >= 30 and len(PARAMS["form"]) + len(PARAMS["advanced"]) >= 20
    every = "\n".join(m for msgs in EXPECTED.values() for m in msgs)
    for kind in ("expected an integer", "unknown key", "is greater than conc-end", "not a power of two",
                 "unknown runner label", "has no tag", "must be greater than 0, got -", "YAML syntax error",
                 "duplicate key"):
        assert kind in every, f"no corpus file for: {kind}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_sweep_file_registers_no_dag(name: str, sandbox: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep file's own DAG file refuses the config: no sweep DAG can be triggered, the report DAG
    survives, and the import error (of that generated file alone) has the message."""
    from infersweep.airflow.dagfiles import SUBDIR, load_dagbag
    from infersweep.airflow.report_dag import REPORT_DAG_ID

    monkeypatch.setenv("INFERSWEEP_CONFIGS", name)  # relative to the corpus (the cwd), as messages pin it
    bag = load_dagbag(ROOT / "dags")
    assert set(bag.dags) == {REPORT_DAG_ID}
    ((path, error),) = bag.import_errors.items()
    assert f"/{SUBDIR}/" in path
    for message in EXPECTED[name]:
        assert message in error, error
    assert_nothing_started(sandbox)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_broken_after_parse_fails_plan_and_starts_nothing(
    name: str, sandbox: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file went bad between parse and run: the plan task fails with the pinned issues, permanently."""
    from infersweep.airflow.planning import plan_run
    from infersweep.faults.classify import classify

    monkeypatch.setenv("INFERSWEEP_CONFIGS", name)  # relative to the corpus (the cwd), as messages pin it
    with pytest.raises(ConfigError) as info:
        plan_run(KEY, _rc(_default_params(_ok_dag())))
    got = [str(i) for i in info.value.issues]
    assert len(got) == len(EXPECTED[name])
    for message, want in zip(got, EXPECTED[name], strict=True):
        assert message.startswith(want) if want.endswith(" ") else message == want
    assert classify(info.value).kind == "config_error" and not classify(info.value).transient
    assert_nothing_started(sandbox)


@pytest.mark.parametrize("case", PARAMS["form"], ids=lambda c: c["name"])
def test_bad_form_params_are_rejected_before_a_run_exists(case: dict[str, Any]) -> None:
    """Exactly the check the REST API and the UI run before creating a run (a 400 with this message)."""
    from airflow.sdk.exceptions import ParamValidationError
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = DagSerialization.from_dict(DagSerialization.to_dict(_ok_dag()))
    with pytest.raises(ParamValidationError) as info:
        serialized.params.deep_merge(case["conf"]).validate()
    first = str(info.value).splitlines()[0]
    want = case["message"]
    assert first.startswith(want) if want.endswith(" ") else first == want


@pytest.mark.parametrize("case", PARAMS["advanced"], ids=lambda c: c["name"])
def test_bad_run_conf_fails_the_plan_before_anything_is_recorded(
    case: dict[str, Any], sandbox: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Advanced conf keys (and typos of any key) pass Airflow's schema; the plan task rejects them first."""
    from infersweep.airflow.planning import plan_run
    from infersweep.faults import ClassifiedError, classify

    monkeypatch.setenv("INFERSWEEP_CONFIGS", str(CORPUS / "_ok_sweep.yaml"))
    dag = _ok_dag()
    with pytest.raises(ClassifiedError) as info:
        plan_run(KEY, _rc({**_default_params(dag), **case["conf"]}))
    assert str(info.value) == case["message"]
    assert classify(info.value).kind == "config_error" and not classify(info.value).transient
    assert_nothing_started(sandbox)


def test_control_a_good_plan_is_visible_to_the_footprint_check(
    sandbox: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same check sees a valid dry-run plan's run and group rows, so 'nothing' above is measured."""
    from infersweep.airflow.planning import plan_run

    monkeypatch.setenv("INFERSWEEP_CONFIGS", str(CORPUS / "_ok_sweep.yaml"))
    params = {**_default_params(_ok_dag()), "dry_run": True, "engine": "sim"}
    assert plan_run(KEY, _rc(params)) == []
    found = footprint(sandbox)
    assert found["rows"].get("runs") == 1 and found["rows"].get("serve_groups", 0) >= 1, found
