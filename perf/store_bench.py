"""Results store + failure classifier figures: write latency, spool flush rate, leases, reuse, classify.

Usage: .venv/bin/python perf/store_bench.py [--points 200] [--spooled 1000] [--no-postgres]

Runs on a throwaway SQLite file and (when 127.0.0.1:5432 answers) a throwaway Postgres database that is
dropped afterwards. Prints one line per figure; no assertions (figures go to docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from store.helpers import group, point, recipe  # noqa: E402

from infersweep.config.inventory import Node  # noqa: E402
from infersweep.faults import classify  # noqa: E402
from infersweep.store.api import ResultStore  # noqa: E402
from infersweep.store.db import get_engine  # noqa: E402
from infersweep.store.leases import LeaseHolder, acquire_lease, release  # noqa: E402
from infersweep.store.migrate import upgrade  # noqa: E402


@contextmanager
def postgres_db() -> Iterator[str | None]:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        yield None
        return
    import psycopg

    name = f"infersweep_bench_{os.getpid()}_{secrets.token_hex(3)}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        from infersweep.store.db import dispose_engines

        dispose_engines()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def p(xs: list[float], q: float) -> float:
    return statistics.quantiles(xs, n=100)[int(q) - 1] if len(xs) > 1 else xs[0]


def bench_backend(label: str, url: str, tmp: Path, n_points: int, n_spooled: int) -> None:
    upgrade(url)
    engine = get_engine(url)
    g, r = group(concs=tuple(range(1, n_points + 1)), eval_concs=()), recipe()
    store = ResultStore(dag_id="bench", run_id=f"{label}-1", url=url, spool_path=tmp / f"{label}.jsonl")
    store.start_run(trigger_kind="manual")
    store.record_group(g, recipe=r, engine="sim")
    concs = iter(g.concs)
    lat = timed(lambda: store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=next(concs),
                                               result=point(1), gpus=1), n_points)
    print(f"[{label}] record_benchmark (fsync spool + upsert)  n={n_points}  median {statistics.median(lat):.2f} ms"
          f"  p99 {p(lat, 99):.2f} ms")

    # A Postgres outage: records pile up in the spool, then one flush delivers them.
    spool = tmp / f"{label}-outage.jsonl"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"postgresql+psycopg://postgres@127.0.0.1:{s.getsockname()[1]}/x"
    down = ResultStore(dag_id="bench", run_id=f"{label}-2", url=dead, spool_path=spool)
    down.spool.append("run", {"dag_id": "bench", "run_id": f"{label}-2", "trigger_kind": "manual"})
    down.spool.append("group", {"dag_id": "bench", "run_id": f"{label}-2", "group_id": g.id, "config_key": "k"})
    t = time.perf_counter()
    for i in range(n_spooled):
        down.spool.append("benchmark", {"dag_id": "bench", "run_id": f"{label}-2", "group_id": g.id, "isl": 1,
                                        "osl": 1, "conc": i + 1, "status": "ok", "engine": "sim",
                                        "output_tput_per_gpu": 1.0})
    spool_ms = (time.perf_counter() - t) * 1000
    up = ResultStore(dag_id="bench", run_id=f"{label}-2", url=url, spool_path=spool)
    t = time.perf_counter()
    res = up.flush()
    flush_s = time.perf_counter() - t
    print(f"[{label}] spool append (fsync)  {spool_ms / n_spooled:.2f} ms/record;  flush after outage "
          f"{res.applied} records in {flush_s:.2f} s = {res.applied / flush_s:.0f} records/s, remaining {res.remaining}")

    # Reuse check for a fully finished 16-point group (what every serve group asks before booting).
    g16 = group("g16", concs=tuple(range(1, 17)), eval_concs=())
    first = ResultStore(dag_id="bench", run_id=f"{label}-3", url=url, spool_path=tmp / f"{label}-r.jsonl")
    first.start_run(trigger_kind="manual")
    first.record_group(g16, recipe=r, engine="sim")
    for c in g16.concs:
        first.record_benchmark(group_id=g16.id, isl=g16.isl, osl=g16.osl, conc=c, result=point(c), gpus=1)
    second = ResultStore(dag_id="bench", run_id=f"{label}-4", url=url, spool_path=tmp / f"{label}-r.jsonl")
    second.start_run(trigger_kind="manual")
    second.record_group(g16, recipe=r, engine="sim")
    t = time.perf_counter()
    plan = second.plan_reuse(g16, recipe_fingerprint=r.fingerprint(), image_digest_or_tag=g16.image, backend="sim")
    print(f"[{label}] plan_reuse 16/16 points done (query + copy with provenance)  "
          f"{(time.perf_counter() - t) * 1000:.1f} ms  needs_server={plan.needs_server}")

    # Leases: uncontended cycle latency, and 8 threads racing for 2 nodes.
    nodes = [Node(name=f"{label}-n{i}", runner=f"bench-{label}") for i in range(2)]
    k = iter(range(10**9))

    def cycle() -> None:
        lease = acquire_lease(engine, runner=f"bench-{label}", holder=f"solo-{next(k)}", ttl_s=60, nodes=nodes)
        assert lease is not None
        release(engine, lease)

    lat = timed(cycle, 100)
    print(f"[{label}] lease acquire+release, uncontended  median {statistics.median(lat):.2f} ms  p99 {p(lat, 99):.2f} ms")
    done = []

    def racer(w: int) -> None:
        for j in range(10):
            h = LeaseHolder(dag_id="race", run_id=f"w{w}", group_id=f"g{j}")
            while (lease := acquire_lease(engine, runner=f"bench-{label}", holder=h, ttl_s=60, nodes=nodes)) is None:
                time.sleep(0.002)
            release(engine, lease)
            done.append(1)

    t = time.perf_counter()
    threads = [threading.Thread(target=racer, args=(w,)) for w in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    el = time.perf_counter() - t
    print(f"[{label}] lease race 8 threads x 10 groups on 2 nodes  {len(done)} leases in {el:.2f} s "
          f"= {len(done) / el:.0f} leases/s")


def bench_classify() -> None:
    noise = "".join(f"INFO 10-25 13:0{i % 10}:43 [loggers.py:123] Engine 000: Avg prompt throughput: 12.{i} tokens/s\n"
                    for i in range(12_000))  # ~1 MB of steady-state log
    kv = noise + "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`\n"
    for label, text in (("1 MB log, root cause at the end", kv), ("1 MB log, no known pattern", noise)):
        lat = timed(lambda text=text: classify(text), 5)
        print(f"[classify] {label} ({len(text) / 1e6:.2f} MB)  median {statistics.median(lat):.1f} ms  "
              f"-> {classify(text).kind}")
    line = "OSError: [Errno 116] Stale file handle"
    lat = timed(lambda: classify(line), 2000)
    print(f"[classify] one exception line  median {statistics.median(lat) * 1000:.0f} µs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--spooled", type=int, default=1000)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    print(f"cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_backend("sqlite", f"sqlite:///{tmp / 'bench.sqlite'}", tmp, args.points, args.spooled)
        if not args.no_postgres:
            with postgres_db() as pg:
                if pg is None:
                    print("[postgres] skipped: 127.0.0.1:5432 not reachable")
                else:
                    bench_backend("postgres", pg, tmp, args.points, args.spooled)
    bench_classify()


if __name__ == "__main__":
    main()
