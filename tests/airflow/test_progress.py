"""The demo's progress lines (`infersweep.airflow.progress`): one line per serve group each time it moves, read
from the results store, and `dag.test()`'s "No tasks to run" warnings filtered for the demo only."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from infersweep.airflow.demo import demo_env
from infersweep.airflow.progress import DAG_TEST_LOGGER, ProgressPrinter, quiet_unrunnable_warnings
from infersweep.config.inventory import Node
from infersweep.store.api import ResultStore
from infersweep.store.db import get_engine
from infersweep.store.leases import LeaseHolder, acquire_lease, release
from infersweep.store.migrate import upgrade
from infersweep.store.models import utcnow
from infersweep.store.readonly import open_readonly
from tests.airflow.harness import sim_sweep
from tests.store.helpers import group, point

UNRUNNABLE = "No tasks to run. unrunnable tasks: %s"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_unrunnable_warning_is_dropped_inside_the_block_only() -> None:
    logger = logging.getLogger(DAG_TEST_LOGGER)
    seen = _Records()
    logger.addHandler(seen)
    try:
        with quiet_unrunnable_warnings():
            logger.warning(UNRUNNABLE, {"<TaskInstance: sweep.serve_group.serve [up_for_reschedule]>"})
            logger.warning("Task failed; ti=%s", "x")
        logger.warning(UNRUNNABLE, {"t"})
    finally:
        logger.removeHandler(seen)
    assert seen.messages == ["Task failed; ti=x", "No tasks to run. unrunnable tasks: {'t'}"]
    assert not logger.filters


def _after_clock(lines: list[str]) -> list[str]:
    """`demo:   [ 0:31] rest` -> `rest` (the clock is the run's elapsed time)."""
    return [line.split("] ", 1)[1] for line in lines]


def test_printer_prints_each_move_of_each_group_from_store_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    upgrade(url)
    engine = get_engine(url)
    old = ResultStore(dag_id="sweep", run_id="manual__old", url=url, spool_path=tmp_path / "old.jsonl")
    old.start_run(trigger_kind="manual")
    old.record_group(group("g0", concs=(1,)), status="serving")

    written: list[str] = []
    printer = ProgressPrinter("sweep", engine=lambda: open_readonly(url), since=utcnow(), write=written.append)
    assert printer.poll() == [], "the older run of the same sweep is not this one"

    store = ResultStore(dag_id="sweep", run_id="manual__new", url=url, spool_path=tmp_path / "new.jsonl")
    store.start_run(trigger_kind="manual")
    store.record_group(group("g1", concs=(1, 2), eval_concs=(2,)), status="planned")
    store.record_group(group("g2", concs=(4,), eval_concs=()), status="planned")
    steps: list[list[str]] = [printer.poll()]  # planned groups print nothing

    def attempt(task: str, map_index: int, status: str = "success") -> None:
        store.record_attempt(task_id=f"serve_group.{task}", try_number=1, map_index=map_index, status=status,
                             group_id=f"g{map_index}")

    attempt("serve", 2, status="waiting")
    steps.append(printer.poll())
    lease = acquire_lease(engine, runner="h200", ttl_s=600, nodes=[Node(name="n0", runner="h200")],
                          holder=LeaseHolder(dag_id="sweep", run_id="manual__new", group_id="g1"))
    assert lease is not None
    store.record_group({"id": "g1"}, status="serving", node="n0")
    steps.append(printer.poll())
    attempt("serve", 1)
    attempt("warmup", 1)
    steps.append(printer.poll())
    for conc in (1, 2):
        store.record_benchmark(group_id="g1", isl=1024, osl=1024, conc=conc, result=point(conc), engine="sim")
        steps.append(printer.poll())
    attempt("benchmark", 1)
    steps.append(printer.poll())
    steps.append(printer.poll())  # nothing moved
    store.record_eval(group_id="g1", task="gsm8k", conc=2, result={"n": 5, "strict": 1.0, "passed": True})
    attempt("evaluate", 1)
    release(engine, lease)
    store.record_group({"id": "g1"}, status="done")
    steps.append(printer.poll())

    assert [_after_clock(s) for s in steps] == [
        [],
        ["1024/1024 tp1 (g2): waiting for a node"],
        ["1024/1024 tp1 (g1) on n0: serve"],
        ["1024/1024 tp1 (g1) on n0: serve → benchmark 0/2"],
        ["1024/1024 tp1 (g1) on n0: serve → benchmark 1/2"],
        ["1024/1024 tp1 (g1) on n0: serve → benchmark 2/2"],
        ["1024/1024 tp1 (g1) on n0: serve → benchmark 2/2 → eval"],
        [],
        ["1024/1024 tp1 (g1): serve → benchmark 2/2 → eval → done"],
    ]
    assert written == [line for s in steps for line in s]
    assert all(line.startswith("demo:   [ 0:") for line in written)


def test_printer_waits_for_a_store_that_does_not_exist_yet(tmp_path: Path) -> None:
    written: list[str] = []
    url = f"sqlite:///{tmp_path / 'later.sqlite'}"
    with ProgressPrinter("sweep", engine=lambda: open_readonly(url), write=written.append, interval_s=0.05):
        pass
    assert written == [f"demo:   (progress unavailable: cannot read the results store {url}: "
                       f"{tmp_path / 'later.sqlite'} does not exist; a read-only command creates nothing. Run a "
                       "sweep to record results, or create an empty store with `infersweep db upgrade --url "
                       f"{url}`, or pass --db with an existing store's URL.)"]
    assert not (tmp_path / "later.sqlite").exists()


KEY = "tiny-bf16-sim-h100-vllm"


@pytest.mark.e2e
def test_demo_prints_group_lines_and_no_unrunnable_warnings(tmp_path: Path) -> None:
    """The demo's child on a sweep of two groups sharing one node: the second waits for the node (the wait
    in which dag.test() warns every second), both end with their whole trail, then the summary."""
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(sim_sweep(KEY, isl=4096, osl=64, points=["{ tp: 1, conc-list: [1, 2] }",
                                                              "{ tp: 2, conc-list: [1, 2] }"], nodes=["n0"]))
    work = tmp_path / "work"
    env = demo_env(work_dir=work, configs=[sweep], engine=None, model=None)
    env["INFERSWEEP_DB_URL"] = f"sqlite:///{tmp_path / 'results.sqlite'}"
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True,
                   timeout=600)
    done = subprocess.run([sys.executable, "-m", "infersweep.airflow.demo"], env=env, capture_output=True,
                          text=True, timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert "No tasks to run" not in out

    with get_engine(env["INFERSWEEP_DB_URL"]).connect() as conn:
        groups = dict(conn.execute(text("SELECT group_id, tp FROM serve_groups")).tuples().all())
        leases = conn.execute(text("SELECT node, acquired_at, released_at FROM node_leases ORDER BY id")).all()
    # A serve waited for the node (Airflow recorded its reschedule; the store's `waiting` try was overwritten
    # by the same try's success), and the second group got the node only once the first released it.
    airflow_db = make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).database
    with sqlite3.connect(f"file:{airflow_db}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM task_reschedule").fetchone()[0] >= 1
    assert len(groups) == 2 and [x.node for x in leases] == ["n0", "n0"]
    assert leases[1].acquired_at >= leases[0].released_at
    lines = [line for line in out.splitlines() if line.startswith("demo:   [")]
    for gid, tp in groups.items():
        mine = [line.split("] ", 1)[1] for line in lines if f"({gid})" in line]
        assert mine[-1] == f"4096/64 tp{tp} ({gid}): serve → benchmark 2/2 → done", lines
        assert any(" on n0: serve" in line for line in mine), "the node is named while the group holds it"
    # the summary is unchanged and comes after the progress
    assert out.index(lines[-1]) < out.index("infersweep demo summary") < out.index(f"{KEY}/manual__")
    assert "4/4 green (engine sim" in out
