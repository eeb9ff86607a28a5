"""The sweep run's verdict (issue 18): a run with a failed or unmeasured point, or an eval below its threshold,
ends `failed` with its reasons counted by class (task log + DAG run note); reused and dry-run points are not
failures; the report DAG is created unpaused. Pure verdict, store facts, the REST note, and dag.test runs."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infersweep.airflow.retry import FailureClassRetryPolicy
from infersweep.airflow.verdict import (
    EvalFacts,
    GroupFacts,
    PointFacts,
    RunFacts,
    RunFailed,
    collect_run_facts,
    raise_if_failed,
    run_verdict,
    set_run_note,
)
from infersweep.config.inventory import Node
from infersweep.faults import classify
from infersweep.faults.errors import ClassifiedError
from infersweep.store.api import ResultStore
from infersweep.store.leases import LeaseHolder, acquire_lease, expire_stale, register_nodes
from tests.airflow.alert_sinks import conn_env, http_sink
from tests.airflow.harness import sim_sweep
from tests.reliability.dagruns import FaultHome

RUN = "manual__2026-12-04T02:00:00+00:00"


def _ok(*concs: int, reused: bool = False) -> tuple[PointFacts, ...]:
    return tuple(PointFacts(conc=c, status="ok", reused=reused) for c in concs)


def test_failed_unmeasured_and_below_threshold_are_counted_by_class() -> None:
    facts = RunFacts(dag_id="k", run_id=RUN, config_key="k", status="failed", images=("img:1",), groups=(
        GroupFacts(group_id="g1", label="(tp1 1024/128)", status="done", planned=4, eval_concs=(8,),
                   points=(*_ok(1, 2), *_ok(4, reused=True), PointFacts(conc=8, status="failed",
                                                                        failure_kind="server_died"))),
        # g2's eval never ran because its server did not start: counted once, as its failed points.
        GroupFacts(group_id="g2", label="(tp2 1024/128)", status="failed", failure_kind="kv_cache_oom", planned=2,
                   eval_concs=(2,), points=(PointFacts(conc=1, status="failed", failure_kind="kv_cache_oom"),
                           PointFacts(conc=2, status="failed", failure_kind="kv_cache_oom"))),
        GroupFacts(group_id="g4", label="(tp4 1024/128)", status="planned", planned=3),
    ), evals=(EvalFacts(group_id="g1", task="gsm8k", conc=8, status="ok", strict=0.31, flexible=0.62,
                        threshold=0.5, passed=False),))
    v = run_verdict(facts)
    assert v.failed and v.points_planned == 9 and v.points_ok == 3 and v.points_reused == 1
    assert v.failed_by_class == {"kv_cache_oom": 2, "server_died": 1} and v.points_not_measured == 3
    assert v.reasons == (
        "3 of 9 points failed: kv_cache_oom×2, server_died×1",
        "3 points not measured (group g4 (tp4 1024/128) never served: 3 points not measured)",
        "eval gsm8k 0.31 < 0.50 (group g1 conc 8)",
    )
    assert v.note.splitlines() == ["infersweep verdict: FAILED", *v.reasons, "3/9 points green (1 reused)"]
    with pytest.raises(RunFailed) as err:
        raise_if_failed(v)
    assert "3 of 9 points failed: kv_cache_oom×2, server_died×1; 3 points not measured" in str(err.value)
    # A permanent class of its own: Airflow's retry policy fails the verdict at once, no retry.
    assert classify(err.value).kind == "run_failed" and not classify(err.value).transient
    assert "permanent failure" in str(FailureClassRetryPolicy().evaluate(err.value, 1, 4).reason)


def test_reused_points_and_dry_runs_are_not_failures() -> None:
    clean = RunFacts(dag_id="k", run_id=RUN, status="success", groups=(
        GroupFacts(group_id="g1", label="(tp1 1024/128)", status="reused", planned=2, eval_concs=(2,),
                   points=_ok(1, 2, reused=True)),
        GroupFacts(group_id="g2", label="(tp2 1024/128)", status="done", planned=1, points=_ok(1)),
    ), evals=(EvalFacts(group_id="g1", task="gsm8k", conc=2, status="ok", strict=0.9, flexible=0.9,
                        threshold=0.5, passed=True),))
    v = run_verdict(clean)
    assert not v.failed and v.reasons == () and v.points_reused == 2
    assert v.note == "infersweep verdict: passed, 3/3 points green (2 reused), 1 eval passed"
    raise_if_failed(v)  # does not raise
    # A dry run plans groups and measures nothing, on purpose.
    planned_only = RunFacts(dag_id="k", run_id=RUN, status="dry_run", groups=(
        GroupFacts(group_id="g1", label="(tp1 1024/128)", status="planned", planned=4),))
    assert run_verdict(planned_only).dry_run and not run_verdict(planned_only).failed
    assert run_verdict(planned_only).note == "infersweep verdict: dry run, planned only, nothing measured"
    assert not run_verdict(planned_only.model_copy(update={"status": "running"}), dry_run=True).failed


def test_missing_evals_and_unrecorded_runs_fail() -> None:
    facts = RunFacts(dag_id="k", run_id=RUN, groups=(
        GroupFacts(group_id="g1", label="(tp1 1024/128)", status="done", planned=1, eval_concs=(1,), points=_ok(1)),))
    assert run_verdict(facts).reasons == ("eval not run for group g1 at conc 1",)
    errored = facts.model_copy(update={"evals": (EvalFacts(group_id="g1", task="gsm8k", conc=1, status="failed",
                                                           failure_kind="server_died"),)})
    assert run_verdict(errored).reasons == ("eval gsm8k failed (server_died) for group g1 conc 1",)
    assert run_verdict(RunFacts(dag_id="k", run_id=RUN, recorded=False)).failed


def test_facts_come_from_the_store_with_nodes_that_never_freed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    store = ResultStore(dag_id="k", run_id=RUN, url=url, spool_path=tmp_path / "spool.jsonl")
    assert not collect_run_facts(store).recorded
    store.start_run(trigger_kind="manual", config_key="k", image_tag="img:1", engine="sim")
    for gid, tp, status in (("g1", 1, "done"), ("g2", 2, "planned"), ("g3", 4, "planned")):
        store.record_group({"id": gid, "config_key": "k", "tp": tp, "ep": 1, "isl": 256, "osl": 32, "concs": [1, 2],
                            "eval_concs": [2] if gid == "g1" else []}, status=status)
    for conc in (1, 2):
        store.record_benchmark(group_id="g1", isl=256, osl=32, conc=conc)
    store.record_eval(group_id="g1", task="gsm8k", conc=2, result={"n": 5, "strict": 0.2, "flexible": 0.8,
                                                                   "threshold": 0.5, "passed": False})
    store.fail_group("g3", ClassifiedError("kv_cache_oom", "No available memory for the cache blocks"),
                     concs=[1, 2], isl=256, osl=32)
    # g2's node lease outlived its TTL (its worker died): the reaper expired it instead of a release.
    node = Node(name="n0", runner="sim-h100")
    register_nodes(store.engine, [node])
    past = datetime.now(UTC) - timedelta(hours=1)
    acquire_lease(store.engine, runner="sim-h100", holder=LeaseHolder(dag_id="k", run_id=RUN, group_id="g2"),
                  ttl_s=60, nodes=[node], now=past)
    assert len(expire_stale(store.engine)) == 1
    store.finish_run()
    facts = collect_run_facts(store)
    assert facts.images == ("img:1",) and facts.stuck_nodes == ("n0 (group g2)",)
    v = run_verdict(facts)
    assert v.reasons == ("2 of 6 points failed: kv_cache_oom×2",
                         "2 points not measured (group g2 (tp2 256/32) never served: 2 points not measured)",
                         "eval gsm8k 0.20 < 0.50 (group g1 conc 2)")
    assert v.note.endswith("nodes never freed (lease expired): n0 (group g2)")


def test_run_note_goes_through_the_rest_api_connection(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    assert set_run_note("k", RUN, "note") == "skipped:no-connection"
    with http_sink() as api:
        monkeypatch.setenv(*conn_env("infersweep_airflow_api", conn_type="http", host=api.url, login="admin",
                                     password="api-Pa55-do-not-log"))
        assert set_run_note("k", RUN, "infersweep verdict: FAILED\n1 of 2 points failed: kv_cache_oom×1") == \
            "rest:infersweep_airflow_api"
    token, patch = api.received
    assert (token["path"], token["json"]) == ("/auth/token", {"username": "admin", "password": "api-Pa55-do-not-log"})
    assert patch["method"] == "PATCH"
    assert patch["path"] == "/api/v2/dags/k/dagRuns/manual__2026-12-04T02%3A00%3A00%2B00%3A00"
    assert patch["headers"]["Authorization"] == "Bearer api-token-from-auth"
    assert patch["json"] == {"note": "infersweep verdict: FAILED\n1 of 2 points failed: kv_cache_oom×1"}
    out, err = capfd.readouterr()
    assert "api-Pa55-do-not-log" not in caplog.text + out + err


def test_report_dag_is_created_unpaused() -> None:
    from infersweep.airflow.report_dag import build_report_dag

    # Paused, it would start no report run from the sweeps' results assets until someone unpaused it.
    assert build_report_dag().is_paused_upon_creation is False


# ------------------------------------------------------------------------------------------- dag.test runs
KEY = "verdict-bf16-sim-h100-vllm"


def _run(home: FaultHome, conf: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """One dag.test run: its DAGTEST-RESULT and everything it printed (task logs included)."""
    proc = home.start(KEY, conf)
    out, _ = proc.communicate(timeout=900)
    for line in out.splitlines():
        if line.startswith("DAGTEST-RESULT "):
            return json.loads(line.removeprefix("DAGTEST-RESULT ")), out
    raise AssertionError(f"dag.test did not report (exit {proc.returncode}):\n{out[-6000:]}")


def _note(home: FaultHome, run_id: str) -> str | None:
    with sqlite3.connect(home.path / "airflow.db", timeout=30) as conn:
        row = conn.execute("SELECT n.content FROM dag_run_note n JOIN dag_run d ON d.id = n.dag_run_id "
                           "WHERE d.dag_id = ? AND d.run_id = ?", (KEY, run_id)).fetchone()
    return row[0] if row else None


@pytest.mark.e2e
def test_dag_test_run_fails_on_one_failed_point_and_passes_clean(tmp_path: Path) -> None:
    with http_sink() as hook:
        sweep = tmp_path / "sweep.yaml"
        sweep.write_text(sim_sweep(KEY, isl=256, osl=32, nodes=["v0"],
                                   points=["{ tp: 1, conc-list: [1] }", "{ tp: 2, conc-list: [1] }"],
                                   bench_yaml="{ random-range-ratio: 1.0, prompts-per-conc: 2, warmups-per-conc: 1 }")
                         + "notify: { on: [failure], webhook: { conn-id: verdict_hook } }\n")
        name, value = conn_env("verdict_hook", conn_type="http", host=f"{hook.url}/alerts", password="hook-secret-x")
        home = FaultHome(path=tmp_path / "airflow", configs=str(sweep), results_url=f"sqlite:///{tmp_path / 'r.sqlite'}",
                         work_dir=tmp_path / "work", extra_env={
                             # The tp=2 server exits at start with vLLM's KV-cache OOM: its one point fails.
                             "INFERSWEEP_SIM_FAULTS": json.dumps({"tp=2": ["--fail-at-start", "kv-oom"]}),
                             name: value, "INFERSWEEP_BASE_URL": "http://airflow.test",
                             # INFO: the alert's own log line, and a stronger check that no secret is logged.
                             "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"})
        home.migrate()
        clean, _ = _run(home, {"tp": [1]})
        assert clean["state"] == "success", clean
        assert clean["tis"]["verdict[-1]"] == "success"
        assert _note(home, clean["run_id"]) == "infersweep verdict: passed, 1/1 points green"
        assert hook.received == []  # a green run alerts nobody

        # All groups: tp=1 is reused from the clean run (not a failure), tp=2 fails.
        failed, out = _run(home, {})
        assert failed["state"] == "failed", failed
        tis: dict[str, Any] = failed["tis"]
        # finalize still ran (and emitted the results asset); the verdict failed the run.
        assert tis["finalize[-1]"] == "success" and tis["verdict[-1]"] == "failed", tis
        assert _note(home, failed["run_id"]) == ("infersweep verdict: FAILED\n1 of 2 points failed: kv_cache_oom×1\n"
                                                 "1/2 points green (1 reused)")
        # Airflow ran the DAG's on_failure_callback (the infersweep notifier) with the verdict's reasons.
        [alert] = hook.received
    assert alert["path"] == "/alerts" and alert["json"]["run_id"] == failed["run_id"]
    assert alert["json"]["failed_points"] == {"kv_cache_oom": 1}
    assert alert["json"]["reasons"] == ["1 of 2 points failed: kv_cache_oom×1"]
    assert alert["json"]["report_url"].startswith(f"http://airflow.test/infersweep/?dag_id={KEY}&run_id=")
    # The verdict's log gives the reasons; the webhook's token is in no output of the run.
    assert "1 of 2 points failed: kv_cache_oom×1" in out and "failure alert for" in out
    assert "hook-secret-x" not in out
