"""Lease fairness: how long 2-node groups wait under a stream of 1-node groups, with and without the queue.

Usage: .venv/bin/python perf/lease_fairness.py [--rounds 200] [--seed 1] [--small-rate 0.95] [--big-every 20]

A discrete simulation against the real store (a throwaway SQLite file, explicit `now=` per round, so it is
deterministic for a seed). 4 nodes of one label. Every round (one simulated second): finished groups release
their leases, new groups arrive (1-node groups at `--small-rate` per round, holding 2-6 rounds; a 2-node
group every `--big-every` rounds, holding 4), then every waiting group polls once, in random order (pokes
arrive in no particular order). "queue" is `acquire_leases` as shipped (refused requests wait in the FIFO
queue, free nodes are earmarked for older ones); "no queue" passes `enqueue=False` for every request, i.e.
the old greedy first-come-first-poll behaviour. Waits are in rounds; a group still waiting at the end
counts with its wait so far and is reported as unserved. Prints figures; no assertions.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

from infersweep.config.inventory import Node  # noqa: E402
from infersweep.store.db import dispose_engines, get_engine  # noqa: E402
from infersweep.store.leases import NodeLease, acquire_leases, release_all  # noqa: E402
from infersweep.store.migrate import upgrade  # noqa: E402
from infersweep.store.models import utcnow  # noqa: E402


@dataclass
class Group:
    name: str
    size: int
    hold: int
    arrived: int
    served: int | None = None
    leases: list[NodeLease] = field(default_factory=list)


def simulate(url: str, *, queue: bool, rounds: int, seed: int, small_rate: float, big_every: int) -> list[Group]:
    engine = get_engine(url)
    nodes = [Node(name=f"fair-n{i}", runner="fair") for i in range(4)]
    rnd, t0 = random.Random(seed), utcnow()
    groups: list[Group] = []
    running: list[Group] = []
    for r in range(rounds):
        now = t0 + timedelta(seconds=r)
        for g in [g for g in running if g.served is not None and g.served + g.hold <= r]:
            release_all(engine, g.leases, now=now)
            running.remove(g)
        # Poisson-like arrivals of 1-node groups, and a 2-node group every `big_every` rounds.
        arrivals = int(small_rate) + (rnd.random() < small_rate - int(small_rate))
        groups += [Group(f"s{len(groups) + i}", 1, rnd.randint(2, 6), r) for i in range(arrivals)]
        if r % big_every == 0:
            groups.append(Group(f"b{len(groups)}", 2, 4, r))
        waiting = [g for g in groups if g.served is None]
        rnd.shuffle(waiting)
        for g in waiting:
            got = acquire_leases(engine, demand={"fair": g.size}, holder=g.name, ttl_s=10_000, nodes=nodes,
                                 now=now, wait_ttl_s=10_000, enqueue=queue)
            if got is not None:
                g.served, g.leases = r, got
                running.append(g)
    return groups


def summary(groups: list[Group], size: int, rounds: int) -> str:
    waits = [(g.served if g.served is not None else rounds) - g.arrived for g in groups if g.size == size]
    unserved = sum(1 for g in groups if g.size == size and g.served is None)
    return (f"{size}-node groups: n={len(waits):4d}  max wait={max(waits):4d}  mean={statistics.fmean(waits):6.1f}"
            f"  p95={sorted(waits)[int(0.95 * (len(waits) - 1))]:4d}  unserved at end={unserved}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--small-rate", type=float, default=0.95, help="1-node group arrivals per round")
    ap.add_argument("--big-every", type=int, default=20, help="a 2-node group arrives every N rounds")
    args = ap.parse_args()
    print(f"4 nodes, {args.rounds} rounds, seed {args.seed}, 1-node arrivals {args.small_rate}/round "
          f"(hold 2-6), a 2-node group every {args.big_every} rounds (hold 4); waits in rounds")
    with tempfile.TemporaryDirectory() as tmp:
        for queue in (False, True):
            url = f"sqlite:///{Path(tmp) / f'fair-{queue}.sqlite'}"
            upgrade(url)
            groups = simulate(url, queue=queue, rounds=args.rounds, seed=args.seed, small_rate=args.small_rate,
                              big_every=args.big_every)
            label = "queue   " if queue else "no queue"
            print(f"{label}  {summary(groups, 2, args.rounds)}")
            print(f"{label}  {summary(groups, 1, args.rounds)}")
            dispose_engines()


if __name__ == "__main__":
    main()
