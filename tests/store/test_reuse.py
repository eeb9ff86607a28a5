"""Reuse: finished points are skipped (a second run boots no server) and runs can be copied with provenance."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from infersweep.store.models import BenchmarkResult, Run
from infersweep.store.reuse import completed_evals, completed_points, copy_run_results
from infersweep.store.views import run_points

from .helpers import group, point, recipe

EVAL = {"n": 2, "strict": 1.0, "flexible": 1.0, "strict_stderr": 0.0, "flexible_stderr": 0.0,
        "threshold": 0.9, "passed": True}


@pytest.fixture
def image() -> str:
    """A unique image tag per test: the Postgres DB (and so the reusable results) is shared by the session."""
    return f"vllm/vllm-openai:t-{uuid.uuid4().hex[:8]}"


def _measure(store, g, r, *, backend: str = "sim", concs=None, evals: bool = True) -> int:
    """What the DAG's group chain does: ask the store, boot only if needed, record what it measured."""
    store.start_run(trigger_kind="manual", engine=backend)
    store.record_group(g, recipe=r, engine=backend)
    plan = store.plan_reuse(g, recipe_fingerprint=r.fingerprint(), image_digest_or_tag=g.image, backend=backend)
    if not plan.needs_server:
        store.record_group(g, status="skipped")
        return 0
    for conc in concs if concs is not None else plan.pending_concs:
        store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=conc, result=point(conc), gpus=1)
    if evals:
        for conc in plan.pending_eval_concs:
            store.record_eval(group_id=g.id, task="gsm8k", conc=conc, result=EVAL, engine=backend,
                              samples=[{"doc_id": 0, "target": "1", "response": "#### 1", "strict_correct": True}])
    store.record_group(g, status="success")
    return 1  # one server booted


def test_second_run_of_the_same_sweep_boots_zero_servers(engine, make_store, dag_id, image) -> None:
    groups = [group("g1", image=image), group("g2", tp=2, image=image)]
    recipes = {g.id: recipe(image=image, tp=g.tp) for g in groups}
    first = make_store("manual__1")
    assert sum(_measure(first, g, recipes[g.id]) for g in groups) == 2
    second = make_store("manual__2")
    assert sum(_measure(second, g, recipes[g.id]) for g in groups) == 0
    # The second run still shows every point, each pointing at its measurement.
    rows = run_points(engine, dag_id=dag_id, run_id="manual__2")
    assert len(rows) == 8 and all(x["status"] == "ok" and x["reused_from_id"] for x in rows)
    s = second.summary()
    assert s["label"] == "8/8 green" and s["points_reused"] == 8 and s["evals_passed"] == 2
    # force=True reuses nothing.
    plan = second.plan_reuse(groups[0], recipe_fingerprint=recipes["g1"].fingerprint(), image_digest_or_tag=groups[0].image,
                             backend="sim", force=True)
    assert plan.needs_server and plan.pending_concs == [1, 2, 4, 8]


def test_partial_group_resumes_at_the_first_unfinished_point(engine, make_store, image) -> None:
    g, r = group(image=image), recipe(image=image)
    first = make_store("manual__1")
    _measure(first, g, r, concs=[1, 2], evals=False)  # died after conc 2
    assert first.finished_points(g.id) == {1, 2}
    plan = make_store("manual__2").plan_reuse(g, recipe_fingerprint=r.fingerprint(), image_digest_or_tag=g.image,
                                             backend="sim")
    assert plan.done_concs == {1, 2} and plan.pending_concs == [4, 8] and plan.pending_eval_concs == [4]


def test_reuse_needs_same_recipe_image_and_engine_kind(engine, make_store, image) -> None:
    g, r = group(image=image), recipe(image=image)
    _measure(make_store("manual__1"), g, r, backend="sim")
    fp = r.fingerprint()
    assert completed_points(engine, recipe_fingerprint=fp, image_digest_or_tag=g.image, isl=1024, osl=1024,
                            backend="sim") >= {1, 2, 4, 8}
    assert completed_points(engine, recipe_fingerprint=fp, image_digest_or_tag=g.image, isl=1024, osl=1024,
                            backend="vllm-docker") == set()
    assert completed_points(engine, recipe_fingerprint=recipe(image=image + "-other").fingerprint(),
                            image_digest_or_tag=g.image, isl=1024, osl=1024) == set()
    assert completed_points(engine, recipe_fingerprint=fp, image_digest_or_tag="other:tag", isl=1024, osl=1024) == set()
    assert 4 in completed_evals(engine, recipe_fingerprint=fp, image_digest_or_tag=g.image, backend="sim")


def test_copy_run_results_with_provenance_is_idempotent(engine, make_store, dag_id, image) -> None:
    g, r = group(image=image), recipe(image=image)
    _measure(make_store("pr__1"), g, r)
    make_store("merge__1").start_run(trigger_kind="api")
    counts = copy_run_results(engine, "pr__1", "merge__1", source_dag_id=dag_id, target_dag_id=dag_id)
    assert counts == {"groups": 1, "points": 4, "evals": 1, "samples": 1}
    copy_run_results(engine, "pr__1", "merge__1", source_dag_id=dag_id, target_dag_id=dag_id)
    rows = run_points(engine, dag_id=dag_id, run_id="merge__1")
    src = {x["conc"]: x["id"] for x in run_points(engine, dag_id=dag_id, run_id="pr__1")}
    assert len(rows) == 4 and all(x["reused_from_id"] == src[x["conc"]] for x in rows)
    with engine.connect() as conn:
        target = conn.execute(select(Run.tbl()).where(Run.tbl().c.dag_id == dag_id,
                                                      Run.tbl().c.run_id == "merge__1")).mappings().one()
        n = conn.execute(select(BenchmarkResult.tbl().c.id).where(BenchmarkResult.tbl().c.run_pk == target["id"])).all()
    assert target["reused_from_run_id"] is not None and len(n) == 4
    with pytest.raises(LookupError, match="not in the results DB"):
        copy_run_results(engine, "missing", "merge__1", source_dag_id=dag_id)


def test_waiting_groups_counts_this_runs_unstarted_groups_per_runner(make_store, image) -> None:
    store = make_store("manual__wait")
    store.start_run(trigger_kind="manual", engine="sim")
    groups = [group(f"w{i}", image=image) for i in range(3)]
    for g in groups:
        store.record_group(g, recipe=recipe(image=image), engine="sim", status="planned")
    runner = groups[0].runner
    assert store.waiting_groups(runner) == 3
    store.record_group({"id": "w0"}, status="serving")
    store.record_group({"id": "w1"}, status="failed")
    assert store.waiting_groups(runner) == 1
    assert store.waiting_groups("no-such-runner") == 0
    assert make_store("manual__other").waiting_groups(runner) == 0  # another run's queue is not ours
