"""`infersweep status` and its model (`infersweep.store.status`) on a seeded store: who holds which node, points
done and left, elapsed time and the estimate from this run's pace; on SQLite and Postgres."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.config.inventory import Node
from infersweep.faults.errors import ClassifiedError
from infersweep.store.api import ResultStore
from infersweep.store.leases import LeaseHolder, acquire_lease, release
from infersweep.store.status import fmt_duration, load_status, point_durations, render_text

from .helpers import group, point, recipe

T0 = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
RUN = "scheduled__2026-12-01T03:00:00+00:00"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _lease(store: ResultStore, node: str, gid: str, when: float):
    holder = LeaseHolder(dag_id=store.dag_id, run_id=store.run_id, group_id=gid)
    lease = acquire_lease(store.engine, runner="h200", holder=holder, ttl_s=3600, now=at(when),
                          nodes=[Node(name=node, runner="h200")])
    assert lease is not None and lease.node == node
    return lease


def _attempt(store: ResultStore, task: str, gid: str, start: float, end: float, status: str = "success",
             error: BaseException | None = None, try_number: int = 1) -> None:
    # the chain is one mapped task group: each group's tries have their own map index, as under Airflow
    store.record_attempt(task_id=f"serve_group.{task}", try_number=try_number, status=status, group_id=gid,
                         map_index=int(gid.removeprefix("g")), error=error, started_at=at(start), ended_at=at(end))


def _bench(store: ResultStore, gid: str, conc: int, when: float) -> None:
    store.record_benchmark(group_id=gid, isl=1024, osl=1024, conc=conc, result=point(conc), engine="sim",
                           measured_at=at(when))


@pytest.fixture
def seeded(make_store, dag_id: str) -> ResultStore:
    """A run 70 s in: g1 measured 3 of 4 points (10 s each) on n0; g2 1 of 2 (20 s) on n1, its benchmark's
    first try failed; g3 waits for a node. Plus an older finished run of the same sweep."""
    old = make_store("manual__old")
    old.start_run(trigger_kind="manual", started_at=at(-3600))
    old.record_group(group("g0", concs=(1,)), status="done")
    old.record_benchmark(group_id="g0", isl=1024, osl=1024, conc=1, result=point(1), engine="sim",
                         measured_at=at(-3500))
    old.finish_run("success", finished_at=at(-3400))

    store = make_store(RUN)
    store.start_run(trigger_kind="scheduled", started_at=T0, config_key="tiny-fp8-h200-vllm")
    store.record_group(group("g1", concs=(1, 2, 4, 8), eval_concs=(8,)), recipe=recipe(), status="planned")
    store.record_group(group("g2", tp=2, concs=(1, 2), eval_concs=()), recipe=recipe(tp=2), status="planned")
    store.record_group(group("g3", tp=4, concs=(1, 2), eval_concs=()), recipe=recipe(tp=4), status="planned")
    for gid, node, when in (("g1", f"{dag_id}-n0", 5), ("g2", f"{dag_id}-n1", 6)):
        _lease(store, node, gid, when)
        store.record_group({"id": gid}, status="serving", node=node)
        _attempt(store, "serve", gid, when, when + 15)
        _attempt(store, "warmup", gid, 25, 30)
    for conc, when in ((1, 40), (2, 50), (4, 60)):
        _bench(store, "g1", conc, when)
    _bench(store, "g2", 1, 50)
    _attempt(store, "benchmark", "g2", 30, 52, status="failed",
             error=ClassifiedError("server_died", "the server exited with code 137"))
    _attempt(store, "serve", "g3", 7, 7, status="waiting")
    return store


def test_groups_nodes_points_and_estimates(seeded: ResultStore, dag_id: str) -> None:
    status = load_status(seeded.engine, now=at(70), dag_id=dag_id)
    assert [r.run_id for r in status.runs] == [RUN], "only the running run, not the finished one"
    run = status.runs[0]
    g1, g2, g3 = run.groups
    assert (g1.node, g1.stage, g1.trail) == (f"{dag_id}-n0", "benchmark", "serve → benchmark 3/4")
    assert (g1.points_done, g1.points_left, g1.evals_total) == (3, 1, 1)
    # 40 - 30 (warm-up end), 50 - 40, 60 - 50: 10 s a point, one left
    assert g1.s_per_point == pytest.approx(10.0) and g1.eta_s == pytest.approx(10.0)
    assert g1.started_at == at(5) and g1.elapsed_s == pytest.approx(65.0)
    assert (g2.node, g2.stage) == (f"{dag_id}-n1", "benchmark")
    assert g2.trail == "serve → benchmark 1/2 (try 2, after server_died)"
    assert g2.s_per_point == pytest.approx(20.0) and g2.eta_s == pytest.approx(20.0)
    # g3 has no node and no pace of its own: it is estimated at the run's pace, (10+10+10+20)/4 s a point
    assert (g3.node, g3.stage, g3.trail, g3.started_at, g3.elapsed_s) == (None, "waiting", "waiting for a node",
                                                                          at(7), pytest.approx(63.0))
    assert g3.s_per_point is None and g3.eta_s == pytest.approx(12.5 * 2)
    assert (run.points_total, run.points_done, run.points_left, run.parallel) == (8, 4, 4, 2)
    # the groups' 10 + 20 + 25 s shared by the two nodes held, at least g3's 25 s
    assert run.s_per_point == pytest.approx(12.5) and run.eta_s == pytest.approx(27.5)
    assert run.elapsed_s == pytest.approx(70.0) and run.config_key == "tiny-fp8-h200-vllm"
    assert {(x.node, x.group_id, x.run_id, x.expired) for x in status.leases} == {
        (f"{dag_id}-n0", "g1", RUN, False), (f"{dag_id}-n1", "g2", RUN, False)}

    text = render_text(status)
    assert f"{dag_id}  {RUN}  running  elapsed 1m10s" in text
    assert "points 4/8 done (0 failed), 4 left; 12.5 s/point; estimated 28s left" in text
    assert any(line.split()[:2] == ["g1", "1024/1024"] and line.endswith("serve → benchmark 3/4")
               and f"{dag_id}-n0" in line for line in text.splitlines())
    assert f"{dag_id}-n0" in text.split("nodes held:")[1]


def test_a_finished_group_frees_its_node_and_counts_nothing_left(seeded: ResultStore, dag_id: str) -> None:
    _bench(seeded, "g1", 8, 70)
    _attempt(seeded, "benchmark", "g1", 31, 71)
    seeded.record_eval(group_id="g1", task="gsm8k", conc=8, result={"n": 5, "strict": 1.0, "flexible": 1.0,
                                                                    "passed": True})
    _attempt(seeded, "evaluate", "g1", 72, 80)
    lease = next(x for x in load_status(seeded.engine, now=at(81), dag_id=dag_id).leases if x.group_id == "g1")
    held = [x for x in _held(seeded.engine) if x.id and x.node == lease.node]
    assert release(seeded.engine, held[0], now=at(82))
    seeded.record_group({"id": "g1"}, status="done", finished_at=at(83))

    run = load_status(seeded.engine, now=at(90), dag_id=dag_id).runs[0]
    g1 = run.groups[0]
    assert (g1.stage, g1.trail, g1.node) == ("done", "serve → benchmark 4/4 → eval → done", None)
    assert (g1.points_left, g1.eta_s, g1.evals_done) == (0, 0.0, 1)
    assert g1.finished_at == at(83) and g1.elapsed_s == pytest.approx(78.0), "elapsed stops when the group ends"
    assert run.parallel == 1 and run.points_left == 3


def _held(engine: Engine):
    from infersweep.store.leases import active_leases

    return active_leases(engine)


def test_nothing_measured_yet_has_no_estimate(make_store, dag_id: str) -> None:
    store = make_store("manual__fresh")
    store.start_run(trigger_kind="manual", started_at=T0)
    store.record_group(group("g1", concs=(1, 2)), status="planned")
    _lease(store, f"{dag_id}-n0", "g1", 3)
    store.record_group({"id": "g1"}, status="serving", node=f"{dag_id}-n0")

    status = load_status(store.engine, now=at(20), dag_id=dag_id)
    g1 = status.runs[0].groups[0]
    assert (g1.stage, g1.trail, g1.points_left, g1.eta_s) == ("serve", "serve", 2, None)
    assert status.runs[0].eta_s is None and status.runs[0].s_per_point is None
    assert "no point measured yet; estimated ? left" in render_text(status)
    assert any(line.split()[-1] == "serve" and line.split()[-2] == "?" for line in render_text(status).splitlines())


def test_a_run_filter_shows_a_finished_run_and_reused_groups(make_store, dag_id: str) -> None:
    store = make_store("manual__reused")
    store.start_run(trigger_kind="manual", started_at=T0)
    store.record_group(group("g1", concs=(1, 2)), status="reused")
    for conc in (1, 2):
        _bench(store, "g1", conc, 1)
    store.finish_run("success", finished_at=at(30))
    assert load_status(store.engine, dag_id=dag_id).runs == []
    run = load_status(store.engine, dag_id=dag_id, run_id="manual__reused", running_only=False).runs[0]
    assert (run.status, run.elapsed_s, run.points_done, run.points_left, run.eta_s) == ("success", 30.0, 2, 0, 0.0)
    assert run.groups[0].trail == "reused (every point measured before)"


def test_a_group_whose_benchmark_gave_up_is_failed_though_its_teardown_said_done(make_store, dag_id: str) -> None:
    store = make_store("manual__died")
    store.start_run(trigger_kind="manual", started_at=T0)
    store.record_group(group("g1", concs=(1, 2), eval_concs=(2,)), status="serving")
    _attempt(store, "serve", "g1", 1, 5)
    _attempt(store, "warmup", "g1", 5, 6)
    _bench(store, "g1", 1, 10)
    died = ClassifiedError("server_died", "the server exited with code 137")
    store.record_benchmark(group_id="g1", isl=1024, osl=1024, conc=2, error=died, measured_at=at(12))
    for n in (1, 2):
        _attempt(store, "benchmark", "g1", 6, 12 + n, status="failed", error=died, try_number=n)
    _attempt(store, "stop", "g1", 20, 21)
    store.record_group({"id": "g1"}, status="done", finished_at=at(21))

    g1 = load_status(store.engine, now=at(30), dag_id=dag_id).runs[0].groups[0]
    assert (g1.stage, g1.failure_kind, g1.points_failed, g1.points_left) == ("failed", "server_died", 1, 0)
    assert g1.trail == "serve → benchmark 2/2 (1 failed) → failed (server_died)"


def test_point_durations_skip_reused_points_and_start_at_the_warmup() -> None:
    points = [{"measured_at": at(10), "reused_from_id": 7}, {"measured_at": at(40), "reused_from_id": None},
              {"measured_at": at(55), "reused_from_id": None}]
    assert point_durations(points, [at(30)]) == [10.0, 15.0]
    assert point_durations(points, []) == [15.0], "the first point without a warm-up before it has no start"
    assert [fmt_duration(s) for s in (None, 0, 42.4, 185, 3725)] == ["?", "0s", "42s", "3m05s", "1h02m"]


runner = CliRunner()


def test_cli_text_and_json(seeded: ResultStore, db_url: str, dag_id: str) -> None:
    res = runner.invoke(app, ["status", "--db", db_url, "--dag-id", dag_id, "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    run = data["runs"][0]
    assert run["run_id"] == RUN and run["points_done"] == 4 and run["points_left"] == 4
    assert [(g["group_id"], g["node"], g["points_done"], g["points_left"]) for g in run["groups"]] == [
        ("g1", f"{dag_id}-n0", 3, 1), ("g2", f"{dag_id}-n1", 1, 1), ("g3", None, 0, 2)]
    assert sorted(x["node"] for x in data["leases"]) == [f"{dag_id}-n0", f"{dag_id}-n1"]

    res = runner.invoke(app, ["status", "--db", db_url, "--dag-id", dag_id])
    assert res.exit_code == 0, res.output
    assert "serve → benchmark 3/4" in res.stdout and "waiting for a node" in res.stdout


def test_cli_reads_sqlite_without_writing(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERSWEEP_DB_URL", raising=False)
    missing = tmp_path / "nowhere" / "results.sqlite"
    res = runner.invoke(app, ["status", "--db", f"sqlite:///{missing}"])
    assert res.exit_code == 2 and "does not exist; a read-only command creates nothing" in res.stderr
    assert not missing.parent.exists()

    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    store = ResultStore(dag_id="sweep-ro", run_id="manual__1", url=url, spool_path=tmp_path / "spool.jsonl")
    store.start_run(trigger_kind="manual", started_at=T0)
    store.flush()
    from infersweep.store.db import dispose_engines

    dispose_engines()  # checkpoints the WAL: the file's bytes are final before the read
    before = (tmp_path / "results.sqlite").read_bytes()
    res = runner.invoke(app, ["status", "--db", url])
    assert res.exit_code == 0, res.output
    assert "sweep-ro  manual__1  running" in res.stdout
    assert (tmp_path / "results.sqlite").read_bytes() == before
