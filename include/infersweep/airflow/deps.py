"""What the chain's steps use from the outside world, in one object a test can replace.

The steps take a `ChainDeps`: settings, the run's result store, how to build the group's engine and the
benchmark / eval clients. `ChainDeps.for_run(rc)` wires the real ones; unit tests inject a fake engine
and a store on a temporary SQLite file, and run a step in milliseconds without Airflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from infersweep.airflow.context import RunContext, open_store
from infersweep.airflow.settings import AirflowSettings
from infersweep.config.inventory import Node
from infersweep.engines.base import Engine, ServerHandle
from infersweep.store.api import ResultStore

if TYPE_CHECKING:
    from infersweep.airflow.payloads import WorkItem

EngineFactory = Callable[["WorkItem", str], Engine]


def build_engine(work: WorkItem, run_id: str, settings: AirflowSettings | None = None) -> Engine:
    """The work item's engine, with the sweep's options (the sim's answer key when the group is evaluated)."""
    from infersweep.engines.factory import engine_for
    from infersweep.evals.answer_key import sim_answer_key

    settings = settings or AirflowSettings.from_env()
    key = sim_answer_key(settings.work_dir, work.eval.data_dir) if work.engine == "sim" and work.eval_concs else None
    return engine_for(work.engine, log_dir=settings.work_dir / "server-logs", sim=work.sim, answer_key=key,
                      run_id=run_id, hf_conn_id=settings.hf_conn_id)


def _run_benchmark(cfg: Any) -> dict[str, Any]:
    from infersweep.bench import run_benchmark

    result: dict[str, Any] = run_benchmark(cfg)
    return result


def _run_gsm8k(*args: Any, **kwargs: Any) -> Any:
    from infersweep.evals.gsm8k import run_gsm8k

    return run_gsm8k(*args, **kwargs)


def http_healthy(handle: ServerHandle, *, probes: int = 3, timeout_s: float = 10.0) -> bool:
    """`/health` answers 200 (a server that just finished a burst may be slow to answer once)."""
    import time

    from infersweep.engines.readiness import http_get

    for i in range(probes):
        if http_get(f"{handle.base_url}/health", timeout_s)[0] == 200:
            return True
        if i + 1 < probes:
            time.sleep(1.0)
    return False


def _reap(deps: ChainDeps, node: Node, engine_name: str) -> None:
    from infersweep.airflow.lease import reap_orphans

    reap_orphans(deps, node, engine_name)


@dataclass
class ChainDeps:
    """Settings, store, engine factory and clients of one task try."""

    settings: AirflowSettings
    store: ResultStore
    engine_factory: EngineFactory
    run_benchmark: Callable[[Any], dict[str, Any]] = _run_benchmark
    run_gsm8k: Callable[..., Any] = _run_gsm8k
    #: Whether a running server answers HTTP (`Engine.is_alive` says whether its process runs).
    healthy: Callable[[ServerHandle], bool] = http_healthy
    #: Stops servers whose task died, once a node is leased (`lease.reap_orphans`).
    reap: Callable[[ChainDeps, Node, str], None] = _reap

    @classmethod
    def for_run(cls, rc: RunContext) -> ChainDeps:
        """The real dependencies of a task try of `rc`'s run."""
        settings = AirflowSettings.from_env()
        return cls(settings=settings, store=open_store(rc, settings),
                   engine_factory=lambda work, run_id: build_engine(work, run_id, settings))

    def engine(self, work: WorkItem, rc: RunContext) -> Engine:
        """The work item's engine (for a multinode group, the topology engine around it)."""
        from infersweep.airflow.server import engine_for_work

        return engine_for_work(self.engine_factory(work, rc.run_id), work)
