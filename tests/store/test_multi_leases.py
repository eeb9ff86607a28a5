"""Multi-node leases: all or none, whole-set heartbeat/release/expiry, a fair queue, and no overlap or deadlock
under concurrent acquirers (SQLite and, when reachable, Postgres)."""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from infersweep.config.inventory import Node
from infersweep.store.leases import (
    LeaseHolder,
    LeaseLost,
    NodeLease,
    acquire_lease,
    acquire_leases,
    active_leases,
    expire_stale,
    heartbeat,
    heartbeat_all,
    lease_history,
    queue_key,
    release,
    release_all,
    set_node_enabled,
    waiting_requests,
    withdraw_request,
)
from infersweep.store.models import LeaseRequestRow, utcnow


def _label(prefix: str = "b200") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"  # unique: the Postgres DB is shared by the session


def _fleet(label: str, n: int) -> list[Node]:
    return [Node(name=f"{label}-n{i}", runner=label) for i in range(n)]


@pytest.fixture
def fleet() -> list[Node]:
    """4 nodes of one runner label."""
    return _fleet(_label(), 4)


_RUN = ["r"]


@pytest.fixture(autouse=True)
def _fresh_run() -> None:
    """Holders (and so queue keys) unique per test: the Postgres DB is shared by the session."""
    _RUN[0] = f"r-{uuid.uuid4().hex[:8]}"


def _h(name: str, try_number: int = 1) -> LeaseHolder:
    return LeaseHolder(dag_id="multi", run_id=_RUN[0], group_id=name, try_number=try_number)


def _mine(engine: Engine, runner: str, holder: LeaseHolder | str) -> list[NodeLease]:
    return [x for x in active_leases(engine, runner) if x.holder == str(holder)]


def _queue_keys(engine: Engine) -> set[str]:
    table = LeaseRequestRow.tbl()
    with engine.connect() as conn:
        return set(conn.execute(select(table.c.queue_key)).scalars())


def test_all_or_none_never_leaves_a_partial_booking(engine, fleet) -> None:
    label = fleet[0].runner
    other = acquire_leases(engine, demand={label: 1}, holder=_h("other"), ttl_s=60, nodes=fleet)
    assert other is not None and len(other) == 1
    # 3 nodes free, 4 asked: nothing is booked (enqueue=False: this test is about atomicity, not the queue).
    big = _h("big")
    assert acquire_leases(engine, demand={label: 4}, holder=big, ttl_s=60, nodes=fleet, enqueue=False) is None
    assert _mine(engine, label, big) == []
    assert [x.id for x in active_leases(engine, label)] == [other[0].id]
    assert waiting_requests(engine, label) == []
    pair = acquire_leases(engine, demand={label: 2}, holder=_h("pair"), ttl_s=60, nodes=fleet)
    assert pair is not None and len(pair) == 2
    assert len({x.node for x in pair}) == 2 and other[0].node not in {x.node for x in pair}
    assert {x.runner for x in pair} == {label} and len({x.set_id for x in pair}) == 1 and pair[0].set_id
    assert [x.node_spec(fleet).name for x in pair] == [x.node for x in pair]
    assert len(active_leases(engine, label)) == 3


def test_heterogeneous_demand_across_two_labels(engine) -> None:
    x_label, y_label = _label("b200"), _label("h100")
    nodes = _fleet(x_label, 2) + _fleet(y_label, 3)
    demand = {x_label: 1, y_label: 2}
    first = acquire_leases(engine, demand=demand, holder=_h("disagg-1"), ttl_s=60, nodes=nodes)
    assert first is not None
    assert Counter(x.runner for x in first) == Counter(demand) and len({x.node for x in first}) == 3
    assert len({x.set_id for x in first}) == 1
    # One x and one y left: a second {x: 1, y: 2} group gets nothing, not the x alone.
    second = _h("disagg-2")
    assert acquire_leases(engine, demand=demand, holder=second, ttl_s=60, nodes=nodes) is None
    assert _mine(engine, x_label, second) == [] and _mine(engine, y_label, second) == []
    assert [r.queue_key for r in waiting_requests(engine, y_label)] == [queue_key(second)]
    assert release_all(engine, first) == 3
    got = acquire_leases(engine, demand=demand, holder=second, ttl_s=60, nodes=nodes)
    assert got is not None and Counter(x.runner for x in got) == Counter(demand)
    assert waiting_requests(engine, y_label) == []  # served: its place in the queue is gone


def test_idempotent_per_holder_and_a_partial_set_is_replaced_whole(engine, fleet) -> None:
    label, holder = fleet[0].runner, _h("g")
    first = acquire_leases(engine, demand={label: 2}, holder=holder, ttl_s=60, nodes=fleet)
    assert first is not None
    again = acquire_leases(engine, demand={label: 2}, holder=holder, ttl_s=60, nodes=fleet)
    assert again is not None and [x.id for x in again] == [x.id for x in first]  # a retried task keeps its nodes
    # A member released behind the holder's back: the next acquire never hands back a partial set.
    assert release(engine, first[0])
    renewed = acquire_leases(engine, demand={label: 2}, holder=holder, ttl_s=60, nodes=fleet)
    assert renewed is not None and len(renewed) == 2 and renewed[0].set_id != first[0].set_id
    assert {x.id for x in renewed}.isdisjoint({x.id for x in first})
    old = {x.id: x for x in lease_history(engine) if x.id in {y.id for y in first}}
    assert old[first[1].id].release_reason == "partial" and old[first[0].id].release_reason == "released"
    assert sorted(x.id for x in _mine(engine, label, holder)) == sorted(x.id for x in renewed)
    # The one-node wrapper is the same call with {runner: 1}, and keeps its own idempotence.
    solo = acquire_lease(engine, runner=label, holder=_h("solo"), ttl_s=60, nodes=fleet)
    assert solo is not None and solo.set_id
    assert acquire_lease(engine, runner=label, holder=_h("solo"), ttl_s=60, nodes=fleet) == solo


def test_release_all_and_heartbeat_all(engine, fleet) -> None:
    label, t0 = fleet[0].runner, utcnow()
    leases = acquire_leases(engine, demand={label: 2}, holder=_h("hb"), ttl_s=30, nodes=fleet, now=t0)
    assert leases is not None
    beat = heartbeat_all(engine, leases, now=t0 + timedelta(seconds=20))
    assert [x.expires_at for x in beat] == [t0 + timedelta(seconds=50)] * 2
    assert [x.id for x in beat] == [x.id for x in leases]
    assert release_all(engine, beat) == 2 and release_all(engine, beat) == 0
    assert active_leases(engine, label) == []

    # One member lost: the holder is told, and the rest of the set is given back (no partial set).
    leases = acquire_leases(engine, demand={label: 3}, holder=_h("hb2"), ttl_s=30, nodes=fleet)
    assert leases is not None and release(engine, leases[1])
    with pytest.raises(LeaseLost, match=leases[1].node):
        heartbeat_all(engine, leases)
    assert active_leases(engine, label) == []
    reasons = {x.id: x.release_reason for x in lease_history(engine) if x.id in {y.id for y in leases}}
    assert reasons == {leases[0].id: "partial", leases[1].id: "released", leases[2].id: "partial"}


def test_expire_stale_takes_the_whole_set(engine, fleet) -> None:
    label, t0 = fleet[0].runner, utcnow()
    leases = acquire_leases(engine, demand={label: 2}, holder=_h("exp"), ttl_s=30, nodes=fleet, now=t0)
    assert leases is not None
    heartbeat(engine, leases[0], now=t0 + timedelta(seconds=20))  # one member fresh (until t0+50), one stale
    expired = [x for x in expire_stale(engine, now=t0 + timedelta(seconds=40)) if x.runner == label]
    assert sorted(x.id for x in expired) == sorted(x.id for x in leases)
    assert {x.release_reason for x in expired} == {"expired"}
    assert active_leases(engine, label) == []
    with pytest.raises(LeaseLost):
        heartbeat_all(engine, leases)


def test_impossible_demand_and_drained_nodes(engine, fleet) -> None:
    label = fleet[0].runner
    with pytest.raises(ValueError, match=rf"{label}'? asks 5 node\(s\), but the inventory has only 4 enabled"):
        acquire_leases(engine, demand={label: 5}, holder=_h("too-big"), ttl_s=60, nodes=fleet)
    with pytest.raises(ValueError, match="no node in the inventory has runner label 'nope'"):
        acquire_leases(engine, demand={label: 1, "nope": 1}, holder=_h("x"), ttl_s=60, nodes=fleet)
    for bad in ({}, {label: 0}):
        with pytest.raises(ValueError, match="demand"):
            acquire_leases(engine, demand=bad, holder=_h("x"), ttl_s=60, nodes=fleet)
    # A waiter whose demand becomes impossible (a node drained) gets the error and leaves the queue.
    busy = acquire_leases(engine, demand={label: 1}, holder=_h("busy"), ttl_s=60, nodes=fleet)
    waiter = _h("all4")
    assert busy is not None and acquire_leases(engine, demand={label: 4}, holder=waiter, ttl_s=60, nodes=fleet) is None
    assert queue_key(waiter) in _queue_keys(engine)
    drained = next(n.name for n in fleet if n.name != busy[0].node)
    assert set_node_enabled(engine, drained, False)
    with pytest.raises(ValueError, match="only 3 enabled node\\(s\\) of that label \\(4 in total, 1 drained\\)"):
        acquire_leases(engine, demand={label: 4}, holder=waiter, ttl_s=60, nodes=fleet)
    assert queue_key(waiter) not in _queue_keys(engine)
    # The drained node is never leased, even when every other one is.
    rest = acquire_leases(engine, demand={label: 2}, holder=_h("rest"), ttl_s=60, nodes=fleet)
    assert rest is not None and drained not in {x.node for x in rest}
    assert acquire_leases(engine, demand={label: 1}, holder=_h("one-more"), ttl_s=60, nodes=fleet) is None


def _step(engine: Engine, fleet: list[Node], holder: LeaseHolder, n: int, t: datetime,
          **kw: float) -> list[NodeLease] | None:
    return acquire_leases(engine, demand={fleet[0].runner: n}, holder=holder, ttl_s=600, nodes=fleet, now=t, **kw)


def test_a_big_group_is_served_before_a_stream_of_younger_small_ones(engine, fleet) -> None:
    """Stepwise, with explicit times: the 2-node request earmarks the nodes that free up; younger 1-node
    requests get nothing until it is served, then they are served oldest first."""
    t0, s = utcnow(), timedelta(seconds=1)
    smalls = [_h(f"s{i}") for i in range(4)]
    held = {h.group_id: _step(engine, fleet, h, 1, t0) for h in smalls}
    assert all(held.values())
    big = _h("big")
    assert _step(engine, fleet, big, 2, t0 + s) is None  # all busy: it waits, first in the queue
    assert release_all(engine, held.pop("s0") or [], now=t0 + 2 * s) == 1
    young1 = _h("young1")
    assert _step(engine, fleet, young1, 1, t0 + 3 * s) is None  # the free node is earmarked for `big`
    assert _step(engine, fleet, big, 2, t0 + 4 * s) is None  # 1 free < 2: still waiting, keeps its place
    assert release_all(engine, held.pop("s1") or [], now=t0 + 5 * s) == 1
    young2 = _h("young2")
    assert _step(engine, fleet, young2, 1, t0 + 6 * s) is None
    assert _step(engine, fleet, young1, 1, t0 + 7 * s) is None  # 2 free, both earmarked for `big`
    got = _step(engine, fleet, big, 2, t0 + 8 * s)
    assert got is not None and len(got) == 2
    assert [r.queue_key for r in waiting_requests(engine, fleet[0].runner, now=t0 + 8 * s)] == [
        queue_key(young1), queue_key(young2)]
    assert release_all(engine, held.pop("s2") or [], now=t0 + 9 * s) == 1
    assert _step(engine, fleet, young2, 1, t0 + 10 * s) is None  # young1 came first
    assert _step(engine, fleet, young1, 1, t0 + 11 * s) is not None
    assert release_all(engine, held.pop("s3") or [], now=t0 + 12 * s) == 1
    assert _step(engine, fleet, young2, 1, t0 + 13 * s) is not None
    assert waiting_requests(engine, fleet[0].runner, now=t0 + 13 * s) == []


def test_a_dead_waiter_stops_blocking_and_a_retried_try_keeps_its_place(engine, fleet) -> None:
    label, t0, s = fleet[0].runner, utcnow(), timedelta(seconds=1)
    held = _step(engine, fleet, _h("held"), 3, t0)
    assert held is not None
    dead, young = _h("dead"), _h("young")
    assert _step(engine, fleet, dead, 2, t0 + s, wait_ttl_s=10) is None
    assert _step(engine, fleet, young, 1, t0 + 2 * s) is None  # the one free node is earmarked for `dead`
    queue = waiting_requests(engine, label, now=t0 + 3 * s)
    assert [(r.position, r.queue_key, r.demand) for r in queue] == [
        (1, queue_key(dead), {label: 2}), (2, queue_key(young), {label: 1})]
    # `dead` never polls again: past its 10 s TTL it no longer counts, and its row is dropped.
    assert _step(engine, fleet, young, 1, t0 + 12 * s) is not None
    assert queue_key(dead) not in _queue_keys(engine)
    # A waiter that gives up can leave at once instead of blocking until its TTL.
    quitter = _h("quitter")
    assert _step(engine, fleet, quitter, 1, t0 + 12 * s) is None and queue_key(quitter) in _queue_keys(engine)
    assert withdraw_request(engine, quitter) is True and withdraw_request(engine, quitter) is False
    assert queue_key(quitter) not in _queue_keys(engine)

    # A retried task (try 2) polls under the same queue key: it keeps try 1's place, ahead of `later`.
    assert release_all(engine, held, now=t0 + 13 * s) == 3
    blocker = _step(engine, fleet, _h("blocker"), 2, t0 + 14 * s)  # with `young`'s node: 1 of 4 free
    assert blocker is not None
    first, later, retry = _h("retried", 1), _h("later"), _h("retried", 2)
    assert _step(engine, fleet, first, 2, t0 + 15 * s) is None
    assert _step(engine, fleet, later, 2, t0 + 16 * s) is None
    assert _step(engine, fleet, retry, 2, t0 + 17 * s) is None
    queue = waiting_requests(engine, label, now=t0 + 17 * s)
    assert [r.queue_key for r in queue] == [queue_key(first), queue_key(later)]
    assert queue[0].first_requested_at == t0 + 15 * s and queue[0].holder == str(retry) and queue[0].polls == 2
    assert release_all(engine, blocker, now=t0 + 18 * s) == 2
    assert _step(engine, fleet, later, 2, t0 + 19 * s) is None  # 3 free, 2 earmarked for the retried group
    got = _step(engine, fleet, retry, 2, t0 + 20 * s)
    assert got is not None and {x.holder for x in got} == {str(retry)}


#: A 1-node worker stops when every 2-node worker is done, or after this many groups (the 2-node workers
#: were then starved by the stream).
SMALL_CAP = 300


def test_concurrent_groups_never_overlap_deadlock_or_starve(engine, fleet) -> None:
    """4 nodes; 2 workers take 2-node sets (4 each) while 4 workers stream 1-node sets until the 2-node workers
    are done (each thread has its own DB connection); a monitor checks no partial set is ever visible.
    Afterwards: 0 overlaps in the history, every worker finished (a join timeout, not a speed assertion), and
    the 2-node workers were served while the stream kept going (no starvation)."""
    label = fleet[0].runner
    bigs = {f"big{i}": 4 for i in range(2)}
    errors: list[BaseException] = []
    done: Counter[str] = Counter()
    partial_seen: list[str] = []
    bigs_done, stop = threading.Event(), threading.Event()

    def run_group(name: str, size: int, j: int, rnd: random.Random) -> None:
        holder = LeaseHolder(dag_id=f"race-{label}", run_id=f"{name}-{size}", group_id=f"g{j}")
        while (leases := acquire_leases(engine, demand={label: size}, holder=holder, ttl_s=60, nodes=fleet,
                                        wait_ttl_s=60)) is None:
            time.sleep(rnd.uniform(0.001, 0.004))
        assert len(leases) == size
        time.sleep(rnd.uniform(0.001, 0.005))  # "serving"
        assert release_all(engine, leases) == size
        done[name] += 1

    def big(name: str, iterations: int) -> None:
        rnd = random.Random(name)
        try:
            for j in range(iterations):
                run_group(name, 2, j, rnd)
        except BaseException as exc:
            errors.append(exc)

    def small(name: str) -> None:
        rnd = random.Random(name)
        try:
            for j in range(SMALL_CAP):
                if bigs_done.is_set():
                    return
                run_group(name, 1, j, rnd)
        except BaseException as exc:
            errors.append(exc)

    def monitor() -> None:
        while not stop.is_set():
            sets: dict[str | None, list[NodeLease]] = defaultdict(list)
            for x in active_leases(engine, label):
                sets[x.set_id].append(x)
            for members in sets.values():
                want = _size(members[0])
                if len(members) != want:
                    partial_seen.append(f"{members[0].holder}: {len(members)} of {want}")
            time.sleep(0.002)

    big_threads = [threading.Thread(target=big, args=(n, k), daemon=True) for n, k in bigs.items()]
    small_threads = [threading.Thread(target=small, args=(f"small{i}",), daemon=True) for i in range(4)]
    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    for t in small_threads + big_threads:
        t.start()
    for t in big_threads:
        t.join(timeout=120)  # a generous bound: a deadlock or a starved worker leaves a thread alive
    bigs_done.set()
    for t in small_threads:
        t.join(timeout=120)
    stop.set()
    watcher.join(timeout=10)
    assert not [t.name for t in big_threads + small_threads if t.is_alive()], "a worker never finished (deadlock)"
    assert not errors, errors
    assert {n: done[n] for n in bigs} == bigs  # every 2-node group was served...
    smalls = {f"small{i}": done[f"small{i}"] for i in range(4)}
    assert sum(smalls.values()) > 0 and all(k < SMALL_CAP for k in smalls.values()), smalls  # ...amid the stream
    assert partial_seen == []

    history = [x for x in lease_history(engine) if x.runner == label]
    sets: dict[str | None, list[NodeLease]] = defaultdict(list)
    for x in history:
        sets[x.set_id].append(x)
    assert len(sets) == sum(bigs.values()) + sum(smalls.values())
    for members in sets.values():  # each set booked whole, at one instant
        assert len(members) == _size(members[0])
        assert len({m.acquired_at for m in members}) == 1 and len({m.node for m in members}) == len(members)
    assert _overlaps(history) == 0
    assert active_leases(engine, label) == [] and waiting_requests(engine, label) == []


def _overlaps(history: list[NodeLease]) -> int:
    """Pairs of consecutive leases of one node whose intervals overlap (a double booking)."""
    overlaps = 0
    for node in {x.node for x in history}:
        spans = sorted((x.acquired_at, x.released_at) for x in history if x.node == node)
        overlaps += sum(1 for (_, end), (start, _) in itertools.pairwise(spans) if end is None or end > start)
    return overlaps


def _size(lease: NodeLease) -> int:
    """The set size a stress-test holder asked for (its run id ends with it: `big0-2`)."""
    return int(lease.holder.split("/")[1].rsplit("-", 1)[1])


def _process_worker(url: str, fleet: list[Node], name: str, size: int, iterations: int) -> None:
    """One worker process (forked): its own engine and connections, never the parent's pool."""
    from infersweep.store.db import make_engine

    engine, rnd = make_engine(url), random.Random(name)
    try:
        for j in range(iterations):
            holder = LeaseHolder(dag_id=f"proc-{fleet[0].runner}", run_id=f"{name}-{size}", group_id=f"g{j}")
            while (leases := acquire_leases(engine, demand={fleet[0].runner: size}, holder=holder, ttl_s=60,
                                            nodes=fleet, wait_ttl_s=60)) is None:
                time.sleep(rnd.uniform(0.001, 0.004))
            time.sleep(rnd.uniform(0.001, 0.005))
            if release_all(engine, leases) != size:
                raise SystemExit(3)
    finally:
        engine.dispose()


def test_separate_processes_never_overlap(engine, db_url, fleet) -> None:
    """The same guarantee across processes (no shared interpreter lock): 1 process takes 2-node sets, 3 take
    1-node sets; every process exits 0 within a generous bound and the history has 0 overlaps."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    plan = {"big0": (2, 5), "small0": (1, 6), "small1": (1, 6), "small2": (1, 6)}
    procs = [ctx.Process(target=_process_worker, args=(db_url, fleet, n, *p), daemon=True) for n, p in plan.items()]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()  # only our own children, by handle
    assert not alive, "a worker process never finished (deadlock or starvation)"
    assert [p.exitcode for p in procs] == [0] * len(procs)
    history = [x for x in lease_history(engine) if x.runner == fleet[0].runner]
    assert Counter(x.holder.split("/")[1] for x in history) == {f"{n}-{p[0]}": p[0] * p[1] for n, p in plan.items()}
    assert _overlaps(history) == 0
    assert active_leases(engine, fleet[0].runner) == []
