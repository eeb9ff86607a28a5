"""Node leases: exclusive, idempotent per holder, heartbeat/expiry, and no double booking under races."""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from datetime import timedelta

import pytest

from infersweep.config.inventory import Node
from infersweep.store.leases import (
    LeaseHolder,
    LeaseLost,
    acquire_lease,
    active_leases,
    expire_stale,
    heartbeat,
    lease_history,
    release,
)
from infersweep.store.models import utcnow


@pytest.fixture
def nodes() -> list[Node]:
    runner = f"h200-{uuid.uuid4().hex[:6]}"  # unique label: the Postgres DB is shared by the session
    return [Node(name=f"{runner}-n{i}", runner=runner) for i in range(2)]


_RUN = uuid.uuid4().hex[:8]


def _holder(i: int, try_number: int = 1) -> LeaseHolder:
    return LeaseHolder(dag_id="sweep", run_id=f"r-{_RUN}", group_id=f"g{i}", try_number=try_number)


def test_acquire_is_exclusive_and_idempotent_per_holder(engine, nodes) -> None:
    runner = nodes[0].runner
    a = acquire_lease(engine, runner=runner, holder=_holder(1), ttl_s=60, nodes=nodes)
    b = acquire_lease(engine, runner=runner, holder=_holder(2), ttl_s=60, nodes=nodes)
    assert a and b and a.node != b.node
    assert acquire_lease(engine, runner=runner, holder=_holder(3), ttl_s=60, nodes=nodes) is None
    again = acquire_lease(engine, runner=runner, holder=_holder(1), ttl_s=60, nodes=nodes)
    assert again is not None and again.id == a.id  # a retried serve task keeps its node
    assert a.node_spec(nodes).name == a.node
    assert release(engine, a) is True and release(engine, a) is False
    c = acquire_lease(engine, runner=runner, holder=_holder(3), ttl_s=60, nodes=nodes)
    assert c is not None and c.node == a.node
    with pytest.raises(ValueError, match="no node in the inventory"):
        acquire_lease(engine, runner="nope", holder=_holder(9), ttl_s=60, nodes=nodes)


def test_heartbeat_extends_and_expiry_frees_the_node(engine, nodes) -> None:
    runner, t0 = nodes[0].runner, utcnow()
    lease = acquire_lease(engine, runner=runner, holder=_holder(1), ttl_s=30, nodes=nodes[:1], now=t0)
    assert lease is not None
    beat = heartbeat(engine, lease, now=t0 + timedelta(seconds=20))
    assert beat.expires_at == t0 + timedelta(seconds=50)
    assert all(x.node != lease.node for x in expire_stale(engine, now=t0 + timedelta(seconds=40)))
    # The holder died: no heartbeat. A busy node is not taken over before the reaper expires it.
    assert acquire_lease(engine, runner=runner, holder=_holder(2), ttl_s=30, nodes=nodes[:1],
                         now=t0 + timedelta(seconds=60)) is None
    expired = [x for x in expire_stale(engine, now=t0 + timedelta(seconds=60)) if x.node == lease.node]
    assert len(expired) == 1 and expired[0].release_reason == "expired" and expired[0].holder == str(_holder(1))
    with pytest.raises(LeaseLost):
        heartbeat(engine, lease)
    nxt = acquire_lease(engine, runner=runner, holder=_holder(2), ttl_s=30, nodes=nodes[:1])
    assert nxt is not None and nxt.node == lease.node


def test_racing_threads_never_double_book_a_node(engine, nodes) -> None:
    """8 workers × 5 serve groups each, racing for 2 nodes; the lease history must never overlap."""
    runner = nodes[0].runner
    errors: list[BaseException] = []
    served: list[str] = []

    def worker(w: int) -> None:
        rnd = random.Random(w)
        try:
            for j in range(5):
                holder = LeaseHolder(dag_id=f"race-{runner}", run_id=f"w{w}", group_id=f"g{j}")
                while (lease := acquire_lease(engine, runner=runner, holder=holder, ttl_s=60, nodes=nodes)) is None:
                    time.sleep(rnd.uniform(0.001, 0.01))
                time.sleep(rnd.uniform(0.0, 0.005))  # "serving"
                served.append(str(holder))
                assert release(engine, lease)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(served) == 40
    history = [x for x in lease_history(engine) if x.runner == runner]
    assert len(history) == 40 and {x.node for x in history} <= {n.name for n in nodes}
    for node in {x.node for x in history}:
        spans = sorted((x.acquired_at, x.released_at) for x in history if x.node == node)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end is not None and end <= start, f"node {node} was double-booked"
    assert [x for x in active_leases(engine, runner)] == []


def test_drained_node_gets_no_new_lease_and_stays_drained(engine, nodes, db_url) -> None:
    from typer.testing import CliRunner

    from infersweep.cli import app
    from infersweep.store.leases import register_nodes, set_node_enabled

    runner = nodes[0].runner
    register_nodes(engine, nodes)
    out = CliRunner().invoke(app, ["db", "drain", nodes[0].name, "--url", db_url])
    assert out.exit_code == 0, out.output
    # A spec change re-registers the node but does not silently undrain it.
    register_nodes(engine, [nodes[0].model_copy(update={"gpus": 4}), nodes[1]])
    a = acquire_lease(engine, runner=runner, holder=_holder(1), ttl_s=60, nodes=nodes)
    assert a is not None and a.node == nodes[1].name
    assert acquire_lease(engine, runner=runner, holder=_holder(2), ttl_s=60, nodes=nodes) is None
    listing = CliRunner().invoke(app, ["db", "leases", "--url", db_url])
    assert "DRAINED" in listing.output and str(_holder(1)) in listing.output
    assert set_node_enabled(engine, nodes[0].name, True)
    b = acquire_lease(engine, runner=runner, holder=_holder(2), ttl_s=60, nodes=nodes)
    assert b is not None and b.node == nodes[0].name
