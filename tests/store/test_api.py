"""ResultStore write path on SQLite and Postgres: rows, idempotency, failures, views."""

from __future__ import annotations

from sqlalchemy import func, select

from infersweep.store.logs import unpack_log
from infersweep.store.models import (
    Attempt,
    BenchmarkResult,
    EvalResult,
    EvalSample,
    Run,
    ServeGroupRow,
    ServerLog,
)
from infersweep.store.views import failure_breakdown, latest_results, run_points

from .helpers import group, point, recipe


def _count(engine, model, **where) -> int:
    t = model.tbl()
    stmt = select(func.count()).select_from(t)
    for k, v in where.items():
        stmt = stmt.where(t.c[k] == v)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def _record_run(store, g, r, *, fail_conc: int | None = None, backend: str = "sim") -> None:
    store.start_run(trigger_kind="manual", config_key=g.config_key, image_tag=g.image, engine=backend,
                    params={"force": False, "concs": list(g.concs)})
    store.record_group(g, recipe=r, node="node-a", status="running", engine=backend, model_load_s=12.5,
                       memory_verdict={"fits": True, "kv_gib": 30.1}, image_digest="sha256:abc")
    for conc in g.concs:
        if conc == fail_conc:
            store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=conc,
                                   error=RuntimeError("ConnectionResetError: [Errno 104] Connection reset by peer"))
        else:
            store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=conc, result=point(conc), gpus=g.gpus)


def test_full_run_is_recorded_with_identity_and_typed_metrics(engine, make_store) -> None:
    store, g, r = make_store(), group(), recipe()
    _record_run(store, g, r, fail_conc=8)
    store.record_eval(group_id=g.id, task="gsm8k", conc=4,
                      result={"n": 3, "strict": 0.9, "flexible": 0.95, "strict_stderr": 0.01,
                              "flexible_stderr": 0.01, "threshold": 0.9, "passed": True},
                      samples=[{"doc_id": i, "target": "42", "response": "#### 42", "strict_correct": True,
                                "flexible_correct": True} for i in range(3)], engine="sim")
    store.record_server_log(group_id=g.id, text="INFO ready\n" * 50, node="node-a")
    store.record_group(g, status="success")
    assert store.finish_run() == "failed"  # one point failed

    assert _count(engine, BenchmarkResult) >= 4
    rows = {r["conc"]: r for r in run_points(engine, dag_id=store.dag_id, run_id=store.run_id)}
    assert set(rows) == {1, 2, 4, 8}
    ok = rows[4]
    assert ok["status"] == "ok" and ok["engine"] == "sim" and ok["recipe_fingerprint"] == r.fingerprint()
    assert ok["image"] == g.image and ok["image_digest"] == "sha256:abc" and ok["config_key"] == g.config_key
    assert ok["tput_per_gpu"] == 2000.0 and ok["output_tput_per_gpu"] == 1000.0
    assert ok["median_intvty"] == 100.0 and ok["p99_intvty"] == 50.0 and ok["median_ttft_ms"] == 54.0
    assert rows[8]["status"] == "failed" and rows[8]["failure_kind"] == "server_not_ready"
    with engine.connect() as conn:
        raw = conn.execute(select(BenchmarkResult.tbl().c.raw).where(BenchmarkResult.tbl().c.id == ok["id"])).scalar()
        grp = conn.execute(select(ServeGroupRow.tbl()).where(ServeGroupRow.tbl().c.group_id == g.id,
                                                            ServeGroupRow.tbl().c.run_pk == ok["run_pk"])).mappings().one()
        log_row = conn.execute(select(ServerLog.tbl()).where(ServerLog.tbl().c.run_pk == ok["run_pk"])).mappings().one()
        run = conn.execute(select(Run.tbl()).where(Run.tbl().c.id == ok["run_pk"])).mappings().one()
    assert raw["num_prompts"] == 40  # the client's JSON, unchanged
    assert grp["status"] == "success" and grp["node"] == "node-a" and grp["memory_verdict"]["fits"] is True
    assert grp["model_load_s"] == 12.5 and grp["recipe"]["image"] == g.image and grp["n_points"] == 4
    assert unpack_log(log_row["content"]).startswith("INFO ready")
    assert run["status"] == "failed" and run["params"]["concs"] == [1, 2, 4, 8] and run["finished_at"] is not None
    assert _count(engine, EvalSample) >= 3 and _count(engine, EvalResult, passed=True) >= 1

    summary = store.summary()
    assert summary["label"] == "3/4 green" and summary["evals_passed"] == 1
    kinds = {(f["source"], f["failure_kind"]): f["n"] for f in store.failures()}
    assert kinds == {("point", "server_not_ready"): 1}


def test_retried_writes_never_duplicate_rows(engine, make_store) -> None:
    store, g, r = make_store(), group(), recipe()
    _record_run(store, g, r)
    _record_run(store, g, r)  # a retried task re-sends everything
    store.record_attempt(task_id="bench", try_number=1, status="failed", group_id=g.id,
                         error=OSError(116, "Stale file handle"))
    store.record_attempt(task_id="bench", try_number=1, status="failed", group_id=g.id,
                         error=OSError(116, "Stale file handle"))
    # Replaying the already-applied spool records (as after a crash mid-flush) changes nothing either.
    for rec in [{"kind": "benchmark", "data": {"dag_id": store.dag_id, "run_id": store.run_id, "group_id": g.id,
                                               "isl": g.isl, "osl": g.osl, "conc": 1, "status": "ok", "engine": "sim"}}]:
        store._apply([rec])
    pk = run_points(engine, dag_id=store.dag_id, run_id=store.run_id)[0]["run_pk"]
    assert _count(engine, BenchmarkResult, run_pk=pk) == 4
    assert _count(engine, Attempt, run_pk=pk) == 1
    assert _count(engine, Run, dag_id=store.dag_id) == 1


def test_attempts_record_their_failure_class(engine, make_store) -> None:
    store, g = make_store(), group()
    store.start_run(trigger_kind="api")
    store.record_group(g)
    fc = store.record_attempt(task_id="serve", try_number=1, status="failed", group_id=g.id, node="node-a",
                              error=RuntimeError("ValueError: No available memory for the cache blocks."))
    assert fc is not None and fc.kind == "kv_cache_oom" and not fc.transient
    store.record_attempt(task_id="download", try_number=1, status="failed", error=OSError(116, "Stale file handle"))
    store.record_attempt(task_id="download", try_number=2, status="success")
    with engine.connect() as conn:
        rows = conn.execute(select(Attempt.tbl()).join(Run.tbl(), Run.tbl().c.id == Attempt.tbl().c.run_pk)
                            .where(Run.tbl().c.dag_id == store.dag_id)).mappings().all()
    by = {(r["task_id"], r["try_number"]): r for r in rows}
    assert by[("serve", 1)]["failure_kind"] == "kv_cache_oom" and by[("serve", 1)]["transient"] is False
    assert "No available memory" in by[("serve", 1)]["message"]
    assert by[("download", 1)]["failure_kind"] == "stale_file_handle" and by[("download", 1)]["transient"] is True
    assert by[("download", 2)]["status"] == "success" and by[("download", 2)]["failure_kind"] is None
    breakdown = {(f["source"], f["failure_kind"]): f["n"] for f in failure_breakdown(engine, dag_id=store.dag_id)}
    assert breakdown == {("attempt", "kv_cache_oom"): 1, ("attempt", "stale_file_handle"): 1}


def test_failed_group_counts_its_unmeasured_points(engine, make_store) -> None:
    store, g = make_store(), group(concs=(1, 2, 4, 8, 16))
    store.start_run(trigger_kind="scheduled")
    store.record_group(g, recipe=recipe())
    store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=1, result=point(1), gpus=1)
    fc = store.fail_group(g.id, "ValueError: No available memory for the cache blocks.", concs=g.concs,
                          isl=g.isl, osl=g.osl, done=(1,))
    assert fc.kind == "kv_cache_oom"
    s = store.summary()
    assert s["label"] == "1/5 green" and s["groups_failed"] == 1 and s["points_failed"] == 4


def test_latest_view_keeps_sim_and_real_apart_and_prefers_newest(engine, make_store, dag_id) -> None:
    g, r = group(concs=(4,), eval_concs=()), recipe()
    old, new = make_store("scheduled__1"), make_store("scheduled__2")
    _record_run(old, g, r, backend="vllm-docker")
    g_new = group(concs=(4,), eval_concs=())
    new.start_run(trigger_kind="scheduled")
    new.record_group(g_new, recipe=r, engine="vllm-docker")
    new.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=4, result=point(4, tput=1500.0), gpus=1)
    sim = make_store("manual__sim")
    _record_run(sim, g, r, backend="sim")
    real = [x for x in latest_results(engine, backend="vllm-docker", config_key=g.config_key)
            if x["dag_id"] == dag_id]
    assert len(real) == 1 and real[0]["run_id"] == "scheduled__2" and real[0]["output_tput_per_gpu"] == 1500.0
    sims = [x for x in latest_results(engine, backend="sim") if x["dag_id"] == dag_id]
    assert {x["conc"] for x in sims} == {4} and all(x["engine"] == "sim" for x in sims)


def test_store_migrates_a_fresh_database_on_first_write(tmp_path) -> None:
    from infersweep.store.api import ResultStore

    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    store = ResultStore(dag_id="d", run_id="r", url=url, spool_path=tmp_path / "s.jsonl")
    store.start_run(trigger_kind="test")
    assert store.spool.pending() == []
    assert store.summary()["trigger_kind"] == "test"


def test_cli_summary_and_flush(db_url, make_store, dag_id, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("INFERSWEEP_SPOOL_DIR", str(tmp_path / "cli-spool"))
    from typer.testing import CliRunner

    from infersweep.cli import app

    store, g = make_store(), group(concs=(1, 2))
    store.start_run(trigger_kind="manual")
    store.record_group(g, recipe=recipe())
    store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=1, result=point(1), gpus=1)
    store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=2, error="vllm: error: unrecognized arguments: --x")
    runner = CliRunner()
    out = runner.invoke(app, ["db", "summary", "--url", db_url, "--dag-id", dag_id])
    assert out.exit_code == 0, out.output
    assert "1/2 green" in out.output and "engine_cli_error" in out.output
    out = runner.invoke(app, ["db", "flush", "--url", db_url, "--timeout", "5"])
    assert out.exit_code == 0 and "remaining 0" in out.output


def test_dag_group_statuses_count_as_green(make_store) -> None:
    store = make_store()
    store.start_run(trigger_kind="manual")
    for gid, status in (("a", "done"), ("b", "reused"), ("c", "failed"), ("d", "serving")):
        store.record_group(group(gid), status=status)
    s = store.summary()
    assert (s["groups_total"], s["groups_ok"], s["groups_failed"]) == (4, 2, 1)
