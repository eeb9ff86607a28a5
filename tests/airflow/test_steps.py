"""The serve-group chain's steps without Airflow: a fake engine and a store on a temporary SQLite file.

Each case runs in milliseconds: cleanup after a failed start (the lease is released and the group fails,
whatever raised), resume at the first unfinished point, restart after a server death, a lease lost and
re-taken, and the simulator's energy scaling. The few full `dag.test` runs live in test_sweep_e2e.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from infersweep.airflow.context import RunContext
from infersweep.airflow.deps import ChainDeps
from infersweep.airflow.payloads import ServedGroup, WorkItem
from infersweep.airflow.settings import AirflowSettings
from infersweep.airflow.steps import benchmark, evaluate, serve, teardown, warmup
from infersweep.config.inventory import Node
from infersweep.config.settings import SimSettings
from infersweep.engines.base import Engine, EngineError, ServerHandle
from infersweep.faults import classify
from infersweep.store.api import ResultStore
from infersweep.store.leases import active_leases, release
from tests.store.helpers import group, recipe

RUN = "manual__steps"


class FakeEngine(Engine):
    """Starts "servers" that are only records; `fail_start` / `fail_ready` / `dead` script what goes wrong."""

    name = "fake"

    def __init__(self, *, fail_ready: BaseException | None = None) -> None:
        self.fail_ready = fail_ready
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.dead: set[str] = set()

    def start(self, recipe: Any, node: Node | None = None) -> ServerHandle:
        sid = f"srv{len(self.started) + 1}"
        self.started.append(sid)
        return ServerHandle(base_url=f"http://fake/{sid}", id=sid, log_path=None, backend="fake",
                            node=node.name if node else None, engine_version="fake-1")

    def wait_ready(self, handle: ServerHandle, deadline_s: float | None = None) -> None:
        if self.fail_ready is not None:
            raise self.fail_ready

    def is_alive(self, handle: ServerHandle) -> bool:
        return handle.id not in self.dead and handle.id not in self.stopped

    def logs(self, handle: ServerHandle, tail: int | None = None) -> str:
        return f"log of {handle.id}\nValueError: No available memory for the cache blocks." if handle.id in self.dead \
            else f"log of {handle.id}"

    def stop(self, handle: ServerHandle, grace_s: float = 30.0) -> str:
        if handle.id not in self.stopped:
            self.stopped.append(handle.id)
        return f"log of {handle.id}"


def client_result(conc: int, *, start: float = 1000.0) -> dict[str, Any]:
    """A passing client result for one point (the fields the chain and the store read)."""
    return {"max_concurrency": conc, "completed": conc * 4, "failed": 0, "duration": 2.0,
            "total_output_tokens": conc * 64, "total_token_throughput": 100.0 * conc, "median_tpot_ms": 10.0,
            "benchmark_start_time_unix": start, "benchmark_end_time_unix": start + 2.0,
            "infersweep": {"passed": True, "fail_reasons": []}}


class Harness:
    """A run's store, settings and fake engine; `deps()` is what each step gets."""

    def __init__(self, tmp: Path, engine: FakeEngine) -> None:
        self.tmp = tmp
        self.engine = engine
        url = f"sqlite:///{tmp / 'results.sqlite'}"
        self.store = ResultStore(dag_id="k", run_id=RUN, url=url, spool_path=tmp / "spool.jsonl")
        self.settings = AirflowSettings(config_paths=(), lease_ttl_s=600.0, work_dir=tmp / "work",
                                        **_settings_defaults())
        self.bench_calls: list[int] = []
        self.bench_hook: Any = None

    def run_benchmark(self, cfg: Any) -> dict[str, Any]:
        self.bench_calls.append(cfg.conc)
        if self.bench_hook is not None:
            self.bench_hook(cfg)
        return client_result(cfg.conc)

    def deps(self) -> ChainDeps:
        return ChainDeps(settings=self.settings, store=self.store, engine_factory=lambda work, run_id: self.engine,
                         run_benchmark=self.run_benchmark, healthy=lambda handle: True,
                         reap=lambda deps, node, engine: None)

    def rows(self, sql: str) -> list[dict[str, Any]]:
        self.store.flush()
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql))]


def _settings_defaults() -> dict[str, Any]:
    """Every other AirflowSettings field at its environment default."""
    base = AirflowSettings.from_env()
    return {k: v for k, v in vars(base).items() if k not in ("config_paths", "lease_ttl_s", "work_dir")}


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path, FakeEngine())
    yield h
    h.store.engine.dispose()


def work_item(*, concs: tuple[int, ...] = (1, 2, 4), engine: str = "vllm-docker", time_scale: float = 1.0) -> WorkItem:
    g = group(concs=concs, eval_concs=())
    rec = recipe()
    return WorkItem(group=g, recipe=rec, fingerprint=rec.fingerprint(), engine=engine, image=g.image,
                    nodes=(Node(name="n0", runner=g.runner, gpus=8),), concs=concs,
                    sim=SimSettings(**{"time-scale": time_scale}))


def rc(task: str, try_number: int = 1) -> RunContext:
    return RunContext(dag_id="k", run_id=RUN, task_id=f"serve_group.{task}", try_number=try_number, map_index=0)


def _record_plan(h: Harness, work: WorkItem) -> None:
    h.store.start_run(trigger_kind="manual")
    h.store.record_group(work.group, recipe=work.recipe, status="planned")


# --- a failed start -------------------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["engine-factory", "readiness"])
def test_a_failed_start_releases_the_lease_and_fails_the_group(harness: Harness, where: str) -> None:
    """Regression (issue 15, bug 1): building the engine raised before the cleanup's `try`, so the lease
    stayed held and the group stayed `planned`, and `finish_run()` said success."""
    work = work_item()
    _record_plan(harness, work)
    deps = harness.deps()
    if where == "engine-factory":
        def broken(work: WorkItem, run_id: str) -> Engine:
            raise FileNotFoundError("sim-answer-key.jsonl: no GSM8K copy")
        deps.engine_factory = broken
    else:
        harness.engine.fail_ready = EngineError("server exited: ValueError: No available memory for the cache blocks.")
    with pytest.raises(Exception) as info:
        serve(work, rc("serve"), deps)
    assert active_leases(harness.store.engine) == []
    [grp] = harness.rows("SELECT status, failure_kind FROM serve_groups")
    assert grp["status"] == "failed"
    points = harness.rows("SELECT conc, status, failure_kind FROM benchmark_results ORDER BY conc")
    assert [(p["conc"], p["status"]) for p in points] == [(1, "failed"), (2, "failed"), (4, "failed")]
    assert {p["failure_kind"] for p in points} == {classify(info.value).kind}
    assert harness.store.finish_run() == "failed"
    if where == "readiness":
        assert harness.engine.stopped == ["srv1"]  # the half-started server was stopped
        assert grp["failure_kind"] == "kv_cache_oom"


def test_a_run_whose_group_never_finished_is_not_a_success(harness: Harness) -> None:
    work = work_item()
    _record_plan(harness, work)
    assert harness.store.finish_run() == "failed"


# --- the chain, step by step --------------------------------------------------------------------------------
def _serve(h: Harness, work: WorkItem) -> ServedGroup:
    _record_plan(h, work)
    served = serve(work, rc("serve"), h.deps())
    assert [lease.node for lease in active_leases(h.store.engine)] == ["n0"]
    return served


def test_chain_measures_every_point_then_tears_down(harness: Harness) -> None:
    served = _serve(harness, work_item())
    assert warmup(served, rc("warmup"), harness.deps()).group_id == served.group.id
    out = benchmark(served, rc("benchmark"), harness.deps())
    assert out.measured == (1, 2, 4) and out.skipped == ()
    rows = harness.rows("SELECT conc, status, recipe_fingerprint, engine_version FROM benchmark_results ORDER BY conc")
    assert [(r["conc"], r["status"]) for r in rows] == [(1, "ok"), (2, "ok"), (4, "ok")]
    assert {r["recipe_fingerprint"] for r in rows} == {served.fingerprint} and rows[0]["engine_version"] == "fake-1"
    teardown(served, rc("stop"), harness.deps())
    assert harness.engine.stopped == ["srv1"] and active_leases(harness.store.engine) == []
    assert harness.rows("SELECT status FROM serve_groups") == [{"status": "done"}]
    assert harness.store.current_server(served.group.id) is None
    assert harness.store.finish_run() == "success"


def test_a_retry_resumes_at_the_first_unfinished_point(harness: Harness) -> None:
    served = _serve(harness, work_item())

    def fail_at_4(cfg: Any) -> None:
        if cfg.conc == 4:
            raise ConnectionResetError("Connection reset by peer")
    harness.bench_hook = fail_at_4
    with pytest.raises(ConnectionResetError):
        benchmark(served, rc("benchmark"), harness.deps())
    harness.bench_hook = None
    harness.bench_calls.clear()
    out = benchmark(served, rc("benchmark", 2), harness.deps())
    assert out.measured == (4,) and out.skipped == (1, 2) and harness.bench_calls == [4]
    assert harness.engine.started == ["srv1"]  # the server was alive: no restart


def test_a_dead_server_fails_its_point_with_the_root_cause_then_restarts(harness: Harness) -> None:
    served = _serve(harness, work_item())

    def die_at_2(cfg: Any) -> None:
        if cfg.conc == 2:
            harness.engine.dead.add("srv1")
            raise ConnectionResetError("Connection reset by peer")
    harness.bench_hook = die_at_2
    with pytest.raises(Exception) as info:
        benchmark(served, rc("benchmark"), harness.deps())
    assert classify(info.value).kind == "kv_cache_oom"  # from the dead server's log, not the reset
    harness.bench_hook = None
    out = benchmark(served, rc("benchmark", 2), harness.deps())
    assert out.measured == (2, 4) and harness.engine.started == ["srv1", "srv2"]
    # The replacement is on the group's row: evaluate and teardown (on any worker) use it.
    current = harness.store.current_server(served.group.id)
    assert current is not None and current["handle"]["id"] == "srv2"
    assert evaluate(served, rc("evaluate"), harness.deps()).measured == ()
    teardown(served, rc("stop"), harness.deps())
    assert set(harness.engine.stopped) == {"srv1", "srv2"} and active_leases(harness.store.engine) == []


def test_a_lost_lease_is_taken_again_and_its_orphan_stopped(harness: Harness) -> None:
    served = _serve(harness, work_item())
    release(harness.store.engine, served.state.lease)  # as if the TTL had passed while the worker was gone
    out = benchmark(served, rc("benchmark", 2), harness.deps())
    assert out.measured == (1, 2, 4)
    leases = active_leases(harness.store.engine)
    assert len(leases) == 1 and leases[0].id != served.state.lease.id
    # The old server was stopped (an orphan now); a fresh one measured.
    assert harness.engine.started == ["srv1", "srv2"] and "srv1" in harness.engine.stopped
    teardown(served, rc("stop"), harness.deps())
    assert active_leases(harness.store.engine) == []


def test_simulated_energy_is_stretched_to_simulated_time(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sim's watts are real, its seconds compressed ×scale: energy and J/token grow by the scale."""
    from infersweep.telemetry import gpu_metrics
    from infersweep.telemetry.gpu import GpuSample

    samples = [GpuSample(t=999.0 + i * 0.5, gpu=0, power_w=500.0, source="sim") for i in range(10)]

    class Sampler:
        interval_s = 0.5

        def __init__(self, samples: list[GpuSample]) -> None:
            self.samples = samples

        def wait_for_sample_after(self, t: float, timeout_s: float) -> bool:
            return True

    sampler = Sampler(samples)
    plain = gpu_metrics.point_energy(sampler, client_result(1), expected_gpus=1)  # type: ignore[arg-type]
    scaled = gpu_metrics.point_energy(sampler, client_result(1), expected_gpus=1, time_scale=20.0)  # type: ignore[arg-type]
    assert plain["joules_per_token"] == pytest.approx(500.0 * 2.0 / 64)
    assert scaled["joules_per_token"] == pytest.approx(20 * plain["joules_per_token"])
    assert scaled["gpu_metrics_csv"] == plain["gpu_metrics_csv"]  # the readings keep their wall clock
