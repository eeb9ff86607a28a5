"""Soak: a sweep of many serve groups on the simulated engine over 4 simulated nodes; prints figures.

Usage: .venv/bin/python perf/soak.py [--groups 200] [--nodes 4] [--concs 1,2] [--time-scale 50]
                                      [--mode scheduler|dagtest] [--parallelism 8] [--timeout 3600]

`--mode scheduler` (default) runs Airflow's real services (api-server, scheduler, dag-processor, triggerer;
LocalExecutor) on fresh Postgres metadata and results databases (tests/integration/airflow_services.py) and
triggers the DAG over REST; `--mode dagtest` runs it with `dag.test()` (one task at a time, SQLite metadata).
Figures: total wall time; scheduler overhead per task (scheduled→queued, queued→start) and per group (span
minus task run time); peak RSS of the scheduler and of its workers and task processes (psutil, 1 s samples of
the process tree; simulated servers counted apart); and the results check: rows vs. expected, zero lost,
zero duplicated. Exit status 1 if a result is lost or duplicated or the run failed. No timed assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KEY = "soak-bf16-sim-h100-vllm"
TPS = (1, 2, 4, 8)


def soak_sweep(groups: int, nodes: int, concs: list[int], time_scale: float) -> str:
    """One config key with `groups` serve groups: tp ∈ {1,2,4,8} × distinct (isl, osl) scenarios."""
    if groups % len(TPS):
        raise SystemExit(f"--groups must be a multiple of {len(TPS)}")
    conc_list = ", ".join(str(c) for c in concs)
    lines = ["sweep: soak", "engine: sim", "schedule: null", "entries:", f"  {KEY}:",
             "    image: vllm/vllm-openai:v0.11.0", "    model: meta-llama/Llama-3.1-8B-Instruct",
             "    model-prefix: llama3.1-8b", "    runner: sim-h100", "    precision: bf16", "    framework: vllm",
             "    multinode: false", "    scenarios:", "      fixed-seq-len:"]
    for i in range(groups // len(TPS)):
        lines += [f"      - isl: {128 + 8 * i}", "        osl: 16", "        search-space:",
                  *(f"        - {{ tp: {tp}, conc-list: [{conc_list}] }}" for tp in TPS)]
    lines += ["inventory:", "  sim-h100:",
              *(f"  - {{ name: soak-node-{n}, gpus: 8, gpu-memory-gb: 80, gpu-profile: h100 }}" for n in range(nodes)),
              "eval: { enabled: false }", f"sim: {{ time-scale: {time_scale} }}",
              "bench: { random-range-ratio: 1.0, prompts-per-conc: 1, warmups-per-conc: 1 }"]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ memory
@dataclass
class RssSampler:
    """Peak RSS (1 s samples) of a root process, of its non-server descendants and of the sim servers."""

    roots: dict[str, int]
    peak: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def _sample(self) -> None:
        for name, pid in self.roots.items():
            try:
                root = psutil.Process(pid)
                kids = root.children(recursive=True)
                own = root.memory_info().rss
            except psutil.Error:
                continue
            workers = servers = 0
            worker_max = 0
            for k in kids:
                try:
                    rss = k.memory_info().rss
                    is_server = "sim" in k.cmdline() and "serve" in k.cmdline()
                except psutil.Error:
                    continue
                if is_server:
                    servers += rss
                else:
                    workers += rss
                    worker_max = max(worker_max, rss)
            mib = 1024 * 1024
            for k, v in ((f"{name}", own), (f"{name}+workers", own + workers), (f"{name} largest child", worker_max),
                         (f"{name} sim servers", servers)):
                self.peak[k] = max(self.peak[k], v / mib)
        self.samples += 1

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        def loop() -> None:
            while not self._stop.wait(1.0):
                self._sample()

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        try:
            yield self
        finally:
            self._stop.set()
            t.join(timeout=10)


# ------------------------------------------------------------------------------------------------ figures
def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def _secs(a: Any, b: Any) -> float | None:
    if a is None or b is None:
        return None
    a, b = (datetime.fromisoformat(x) if isinstance(x, str) else x for x in (a, b))
    return (b - a).total_seconds()


def task_figures(tis: list[dict[str, Any]], reschedules: int) -> dict[str, Any]:
    """Scheduler overhead from Airflow's task-instance rows (times of the last try of each TI)."""
    sched_to_queue = [d for t in tis if (d := _secs(t["scheduled_dttm"], t["queued_dttm"])) is not None]
    queue_to_start = [d for t in tis if (d := _secs(t["queued_dttm"], t["start_date"])) is not None]
    run = [d for t in tis if (d := _secs(t["start_date"], t["end_date"])) is not None]
    by_group: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for t in tis:
        if t["map_index"] >= 0:
            by_group[t["map_index"]].append(t)
    spans, gaps = [], []
    for group in by_group.values():
        starts = [t["start_date"] for t in group if t["start_date"] is not None]
        ends = [t["end_date"] for t in group if t["end_date"] is not None]
        if not starts or not ends:
            continue
        span = _secs(min(starts), max(ends)) or 0.0
        busy = sum(d for t in group if (d := _secs(t["start_date"], t["end_date"])) is not None)
        spans.append(span)
        gaps.append(span - busy)
    return {
        "task_instances": len(tis), "serve_reschedules": reschedules,
        "scheduled_to_queued_s": {"median": _pct(sched_to_queue, 0.5), "p95": _pct(sched_to_queue, 0.95)},
        "queued_to_start_s": {"median": _pct(queue_to_start, 0.5), "p95": _pct(queue_to_start, 0.95)},
        "task_run_s": {"median": _pct(run, 0.5), "p95": _pct(run, 0.95), "sum": sum(run)},
        "group_span_s": {"median": _pct(spans, 0.5), "p95": _pct(spans, 0.95)},
        "group_gap_s": {"median": _pct(gaps, 0.5), "p95": _pct(gaps, 0.95),
                        "note": "span from the group's first task start to its last task end, minus its task run time"},
    }


def results_check(results_url: str, run_id: str, groups: int, concs: list[int]) -> dict[str, Any]:
    """Rows vs. expected: every (group, conc) exactly once, ok; no attempt row twice."""
    from sqlalchemy import text

    from infersweep.store.db import get_engine

    with get_engine(results_url).connect() as conn:
        q = conn.execute(text(
            "SELECT count(*) AS n, count(DISTINCT (b.group_pk, b.isl, b.osl, b.conc)) AS d, "
            "sum(CASE WHEN b.status = 'ok' THEN 1 ELSE 0 END) AS ok, count(DISTINCT b.group_pk) AS g "
            "FROM benchmark_results b JOIN runs r ON r.id = b.run_pk WHERE r.run_id = :r"), {"r": run_id}).one()
        att = conn.execute(text(
            "SELECT count(*) AS n, count(DISTINCT (a.task_id, a.map_index, a.try_number)) AS d FROM attempts a "
            "JOIN runs r ON r.id = a.run_pk WHERE r.run_id = :r"), {"r": run_id}).one()
        leases = conn.execute(text("SELECT count(*) FILTER (WHERE released_at IS NULL) AS open, count(*) AS n "
                                   "FROM node_leases")).one() if conn.dialect.name == "postgresql" else None
    expected = groups * len(concs)
    return {"expected_points": expected, "rows": q.n, "distinct_points": q.d, "ok": int(q.ok or 0),
            "groups_with_rows": q.g, "lost": expected - q.d, "duplicated": q.n - q.d,
            "attempt_rows": att.n, "attempt_duplicates": att.n - att.d,
            "leases": None if leases is None else {"taken": leases.n, "still_open": leases.open}}


# ------------------------------------------------------------------------------------------------ modes
def _meta_rows(sql_url: str, run_id: str) -> tuple[list[dict[str, Any]], int]:
    from sqlalchemy import create_engine, text

    engine = create_engine(sql_url)
    try:
        with engine.connect() as conn:
            tis = [dict(r._mapping) for r in conn.execute(text(
                "SELECT task_id, map_index, try_number, state, scheduled_dttm, queued_dttm, start_date, end_date "
                "FROM task_instance WHERE dag_id = :d AND run_id = :r"), {"d": KEY, "r": run_id})]
            n = conn.execute(text("SELECT count(*) FROM task_reschedule tr JOIN task_instance ti ON ti.id = tr.ti_id "
                                  "WHERE ti.dag_id = :d AND ti.run_id = :r"), {"d": KEY, "r": run_id}).scalar_one()
    finally:
        engine.dispose()
    return tis, int(n)


def run_scheduler(tmp: Path, sweep: Path, groups: int, parallelism: int, timeout: float) -> dict[str, Any]:
    import httpx

    from tests.integration.airflow_services import airflow_stack

    extra = {"AIRFLOW__CORE__PARALLELISM": str(parallelism), "INFERSWEEP_LEASE_POKE_S": str(LEASE_POKE_S),
             "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
             "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(max(16, parallelism)),
             "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "64"}
    t_setup = time.monotonic()
    with airflow_stack(tmp, configs=str(sweep), extra_env=extra) as stack, stack.client() as client:
        setup_s = time.monotonic() - t_setup
        deadline = time.monotonic() + 300
        while client.get(f"/dags/{KEY}").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("DAG never appeared\n" + stack.logs())
            time.sleep(2)
        client.patch(f"/dags/{KEY}", json={"is_paused": False}).raise_for_status()
        roots = {name: p.pid for name, p in stack.procs.items()}
        with RssSampler(roots).running() as rss:
            t0 = time.monotonic()
            r = client.post(f"/dags/{KEY}/dagRuns", json={"dag_run_id": "soak_1", "logical_date": None, "conf": {}})
            r.raise_for_status()
            state = "running"
            while time.monotonic() - t0 < timeout:
                try:
                    state = client.get(f"/dags/{KEY}/dagRuns/soak_1").json()["state"]
                except (httpx.HTTPError, ValueError, KeyError):
                    state = "unknown"
                if state in ("success", "failed"):
                    break
                time.sleep(5)
            wall = time.monotonic() - t0
        tis, resched = _meta_rows(stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], "soak_1")
        return {"mode": "scheduler (LocalExecutor, Postgres)", "state": state, "wall_s": wall,
                "stack_setup_s": setup_s, "run_id": "soak_1", "results_url": stack.results_url,
                "tasks": task_figures(tis, resched), "peak_rss_mib": dict(rss.peak), "rss_samples": rss.samples,
                "results": results_check(stack.results_url, "soak_1", groups, CONCS)}


def _only_run_id(db: Path) -> str:
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return str(conn.execute("SELECT run_id FROM dag_run ORDER BY id DESC LIMIT 1").fetchone()[0])


def run_dagtest(tmp: Path, sweep: Path, groups: int, timeout: float, results_url: str) -> dict[str, Any]:
    from tests.airflow.harness import AirflowHome, finish

    home = AirflowHome(path=tmp / "airflow", configs=str(sweep), results_url=results_url, work_dir=tmp / "work",
                       lease_poke_s=LEASE_POKE_S)
    home.migrate()
    proc = home.start(KEY, {})
    with RssSampler({"dag.test": proc.pid}).running() as rss:
        t0 = time.monotonic()
        try:
            out = finish(proc, timeout)
        except subprocess.TimeoutExpired:  # report how far it got (finish killed the run)
            out = {"state": f"timeout after {timeout:.0f} s", "run_id": _only_run_id(home.path / "airflow.db")}
        wall = time.monotonic() - t0
    tis, resched = _meta_rows(f"sqlite:///{home.path / 'airflow.db'}", out["run_id"])
    return {"mode": "dag.test (in-process, one task at a time)", "state": out["state"], "wall_s": wall,
            "run_id": out["run_id"], "results_url": results_url, "tasks": task_figures(tis, resched),
            "peak_rss_mib": dict(rss.peak), "rss_samples": rss.samples,
            "results": results_check(results_url, out["run_id"], groups, CONCS)}


CONCS: list[int] = [1, 2]
#: The product's default poke interval (the test harnesses use 1-2 s to keep tests short).
LEASE_POKE_S = 10.0


def soak(groups: int, nodes: int, concs: list[int], time_scale: float, mode: str, parallelism: int = 8,
         timeout: float = 3600, results_url: str | None = None, tmp: Path | None = None) -> dict[str, Any]:
    """Run one soak and return its figures (dagtest mode needs `results_url`)."""
    global CONCS
    CONCS = list(concs)
    tmp = tmp or Path(tempfile.mkdtemp(prefix="infersweep-soak-"))
    sweep = tmp / "soak.yaml"
    sweep.write_text(soak_sweep(groups, nodes, concs, time_scale))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load0 = os.getloadavg()[0]
    if mode == "scheduler":
        out = run_scheduler(tmp, sweep, groups, parallelism, timeout)
    else:
        if results_url is None:
            raise ValueError("dagtest mode needs results_url")
        out = run_dagtest(tmp, sweep, groups, timeout, results_url)
    out.update({"groups": groups, "nodes": nodes, "concs": concs, "time_scale": time_scale,
                "cpus": os.cpu_count(), "loadavg_1m_before": load0, "loadavg_1m_after": os.getloadavg()[0],
                "per_group_wall_s": out["wall_s"] / groups})
    return out


def _leftover_servers(work_dir: Path) -> int:
    n = 0
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = p.info.get("cmdline") or []
            if "sim" in cmd and "serve" in cmd and p.environ().get("INFERSWEEP_WORK_DIR") == str(work_dir):
                n += 1
        except psutil.Error:
            continue
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--groups", type=int, default=200)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--concs", default="1,2")
    ap.add_argument("--time-scale", type=float, default=50.0)
    ap.add_argument("--mode", choices=["scheduler", "dagtest"], default="scheduler")
    ap.add_argument("--parallelism", type=int, default=8)
    ap.add_argument("--timeout", type=float, default=3600.0)
    args = ap.parse_args()
    concs = [int(c) for c in args.concs.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="infersweep-soak-"))
    if args.mode == "dagtest":
        from tests.reliability.conftest import fresh_pg_database

        with fresh_pg_database("infersweep_soak") as url:
            out = soak(args.groups, args.nodes, concs, args.time_scale, args.mode, args.parallelism, args.timeout,
                       results_url=url, tmp=tmp)
    else:
        out = soak(args.groups, args.nodes, concs, args.time_scale, args.mode, args.parallelism, args.timeout,
                   tmp=tmp)
    out["leftover_sim_servers"] = _leftover_servers(tmp / "work")
    out.pop("results_url", None)
    t, r = out["tasks"], out["results"]
    print(f"soak: {args.groups} groups x {len(concs)} concs on {args.nodes} nodes, {out['mode']}, "
          f"time-scale {args.time_scale}, {out['cpus']} CPUs (load {out['loadavg_1m_before']:.1f} before)")
    print(f"  run state {out['state']}; wall {out['wall_s']:.0f} s ({out['per_group_wall_s']:.2f} s/group)")
    print(f"  task instances {t['task_instances']}, serve reschedules {t['serve_reschedules']}; "
          f"scheduled->queued median {t['scheduled_to_queued_s']['median']:.2f} s p95 "
          f"{t['scheduled_to_queued_s']['p95']:.2f} s; queued->start median {t['queued_to_start_s']['median']:.2f} s "
          f"p95 {t['queued_to_start_s']['p95']:.2f} s; task run median {t['task_run_s']['median']:.2f} s")
    print(f"  per group: span median {t['group_span_s']['median']:.1f} s, gap (span - run) median "
          f"{t['group_gap_s']['median']:.1f} s p95 {t['group_gap_s']['p95']:.1f} s")
    print("  peak RSS MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(out["peak_rss_mib"].items())))
    print(f"  results: {r['rows']} rows / {r['expected_points']} expected, lost {r['lost']}, "
          f"duplicated {r['duplicated']}, ok {r['ok']}; attempt duplicates {r['attempt_duplicates']}; "
          f"leases {r['leases']}; leftover sim servers {out['leftover_sim_servers']}")
    print("SOAK-JSON " + json.dumps(out, default=str))
    bad = r["lost"] or r["duplicated"] or r["attempt_duplicates"] or out["state"] != "success"
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
