"""What the point policies read and write (issue 19): decisions, planned-point counts, intervals and repeats on
a point, the scope's groups and points, and the history of a topology. SQLite and Postgres."""

from __future__ import annotations

from sqlalchemy import select

from infersweep.store.models import BenchmarkResult, Run, ServeGroupRow
from infersweep.store.sweep_state import run_decisions, scope_groups, scope_points, topology_history
from tests.store.helpers import group, point, recipe

INTERVAL = {"lo": 1900.0, "hi": 2100.0, "level": 0.95, "method": "student-t", "n": 2}


def test_decisions_planned_points_intervals_and_repeats_round_trip(make_store, engine, dag_id) -> None:
    store = make_store()
    store.start_run(trigger_kind="manual", config_key="tiny-fp8-h200-vllm")
    for gid, tp in (("g1", 1), ("g2", 2)):
        store.record_group(group(gid, tp=tp), recipe=recipe(tp=tp), engine="sim", status="planned")
    repeats = [{"repeat": 0, "metrics": {"total_token_throughput": 1900.0}, "raw": {"a": 1}},
               {"repeat": 1, "metrics": {"total_token_throughput": 2100.0}, "raw": {"a": 2}}]
    store.record_benchmark(group_id="g1", isl=1024, osl=1024, conc=4, result=point(4), engine="sim", gpus=1,
                           intervals={"tput_per_gpu": INTERVAL}, repeats=repeats)
    store.record_benchmark(group_id="g2", isl=1024, osl=1024, conc=8, result=point(8, tput=300.0), engine="sim", gpus=2)
    store.record_decision(group_id="g1", isl=1024, osl=1024, conc=4, policy="adaptive", action="measure",
                          reason="end point", seq=1, detail={"gain": None})
    store.record_decision(group_id="g1", isl=1024, osl=1024, conc=2, policy="adaptive", action="skip",
                          reason="dominated by TP1 at conc 4 by >= 12.0%", seq=2)
    # A retry re-decides the same point: one row, the newest reason.
    store.record_decision(group_id="g1", isl=1024, osl=1024, conc=2, policy="adaptive", action="skip",
                          reason="dominated by TP1 at conc 4 by >= 13.0%", seq=2)
    store.record_decision(group_id="g2", isl=1024, osl=1024, conc=0, policy="adaptive", action="skip-group",
                          reason="dominated (roofline prior)", seq=0)
    store.set_planned_points("g1", 1)
    store.set_planned_points("g2", 1)
    store.flush()

    got = run_decisions(engine, dag_id=dag_id, run_id="manual__1")
    assert [(d["group_id"], d["conc"], d["action"]) for d in got] == [
        ("g1", 4, "measure"), ("g1", 2, "skip"), ("g2", 0, "skip-group")]
    assert got[1]["reason"] == "dominated by TP1 at conc 4 by >= 13.0%"
    g, r, b = ServeGroupRow.tbl(), Run.tbl(), BenchmarkResult.tbl()
    with engine.connect() as conn:
        mine = r.c.dag_id == dag_id  # the Postgres database is shared by the session
        assert dict(conn.execute(select(g.c.group_id, g.c.n_points).join(r, r.c.id == g.c.run_pk).where(mine))
                    .all()) == {"g1": 1, "g2": 1}
        row = conn.execute(select(b).join(r, r.c.id == b.c.run_pk).where(mine, b.c.conc == 4)).mappings().one()
    assert row["intervals"] == {"tput_per_gpu": INTERVAL}
    assert [r["repeat"] for r in row["repeats"]] == [0, 1] and row["repeats"][1]["raw"] == {"a": 2}
    # Run summaries count what the policies left to measure: 2 of 2, not 2 of the 8 ladder points.
    assert store.summary()["label"] == "2/2 green", store.summary()

    groups = scope_groups(engine, dag_id=dag_id, run_id="manual__1", config_key="tiny-fp8-h200-vllm", isl=1024,
                          osl=1024)
    assert [r["group_id"] for r in groups] == ["g1", "g2"] and groups[0]["concs"] == [1, 2, 4, 8]
    pts = scope_points(engine, dag_id=dag_id, run_id="manual__1", group_ids=["g1", "g2"], isl=1024, osl=1024)
    assert sorted((p["group_id"], p["conc"], p["tput_per_gpu"]) for p in pts) == [("g1", 4, 2000.0), ("g2", 8, 300.0)]


def test_topology_history_averages_earlier_runs_by_layout_and_never_mixes_sim_and_real(make_store, engine,
                                                                                       dag_id) -> None:
    key = f"tiny-{dag_id}"  # the Postgres database is shared by the session: a key of this test's own
    for run, tput, eng in (("manual__1", 1000.0, "sim"), ("manual__2", 1200.0, "sim"), ("manual__3", 9999.0, "vllm-docker")):
        store = make_store(run)
        store.start_run(trigger_kind="manual", config_key=key)
        store.record_group(group("g1").model_copy(update={"config_key": key}), recipe=recipe(), engine=eng,
                           status="planned")
        store.record_benchmark(group_id="g1", isl=1024, osl=1024, conc=4, result=point(4, tput=tput), engine=eng,
                               gpus=1, config_key=key)
        store.flush()
    hist = topology_history(engine, config_key=key, isl=1024, osl=1024,
                            exclude_dag_run=(dag_id, "manual__2"), engine_name="sim")
    # Run 2 is the asking run (excluded), run 3 is a real engine: only run 1 counts.
    assert set(hist) == {"TP1"}
    x, y = hist["TP1"][4]
    assert y == 2000.0 and x == 100.0  # tput_per_gpu = total / gpus; interactivity = 1000 / TPOT 10 ms
    hist = topology_history(engine, config_key=key, isl=1024, osl=1024,
                            exclude_dag_run=(dag_id, "none"), engine_name="sim")
    assert hist["TP1"][4][1] == 2200.0  # the mean of both sim runs
