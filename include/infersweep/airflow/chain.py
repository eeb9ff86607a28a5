"""The per-group chain: serve → warmup → benchmark → eval → teardown, on one leased node.

The serve step's output (work item + server handle + lease) is what every later task receives. Local
backends pick a free port, since several "nodes" of a simulated fleet share one machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from infersweep.airflow.context import (
    RunContext,
    _safe,
    free_port,
    open_store,
    recorded_attempt,
    sim_tokenizer_dir,
)
from infersweep.airflow.settings import REPO_ROOT, AirflowSettings
from infersweep.config.inventory import Node
from infersweep.engines.base import Engine, EngineError, ServerHandle
from infersweep.engines.registry import get_engine
from infersweep.faults.classify import ClassifiedError
from infersweep.plan.models import ServeGroup
from infersweep.recipes.model import Recipe
from infersweep.store.api import ResultStore
from infersweep.store.leases import (
    LeaseHolder,
    LeaseLost,
    NodeLease,
    acquire_lease,
    active_leases,
    expire_stale,
    heartbeat,
    lease_active,
    register_nodes,
    release,
)

log = logging.getLogger(__name__)

def _group(work: dict[str, Any]) -> ServeGroup:
    return ServeGroup.model_validate(work["group"])


def _nodes(work: dict[str, Any]) -> list[Node]:
    return [Node.model_validate(n) for n in work["nodes"]]


def _engine(work: dict[str, Any], settings: AirflowSettings, run_id: str | None = None) -> Engine:
    name = work["engine"]
    log_dir = settings.work_dir / "server-logs"
    if name == "sim":
        extra: list[str] = ["--tokenizer", str(sim_tokenizer_dir())]
        sim = work["sim"]
        key = _answer_key(work, settings)
        if key is not None:
            extra += ["--answer-key", str(key), "--accuracy", str(sim["accuracy"])]
        return get_engine("sim", time_scale=float(sim["time_scale"]), model_profile=sim.get("model_profile"),
                          extra_args=extra, log_dir=log_dir)
    if name == "vllm-process":
        return get_engine(name, log_dir=log_dir)
    return get_engine(name, run_id=run_id, hf_token_conn_id=settings.hf_conn_id, log_dir=log_dir)


def _answer_key(work: dict[str, Any], settings: AirflowSettings) -> Path | None:
    """For the sim's accuracy path: a question → final-answer key built from the GSM8K test split."""
    if not work.get("eval_concs"):
        return None
    from infersweep.evals.data import load_gsm8k

    path = settings.work_dir / "sim-answer-key.jsonl"
    if not path.exists():
        data = load_gsm8k(work["eval"].get("data_dir") or _default_gsm8k_dir())
        tmp = path.with_suffix(".tmp")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w") as fh:
            for doc in data.test:
                fh.write(json.dumps({"question": doc.question, "answer": doc.answer.split("####")[-1].strip()}) + "\n")
        tmp.replace(path)
    return path


def _default_gsm8k_dir() -> str | None:
    """A local GSM8K copy when present (INFERSWEEP_GSM8K_DIR, or the repo's ../shared), else the hub."""
    env = os.environ.get("INFERSWEEP_GSM8K_DIR")
    if env:
        return env
    shared = REPO_ROOT.parent / "shared" / "data" / "gsm8k"
    return str(shared) if (shared / "test.jsonl").exists() else None


def _served_context(served: dict[str, Any], rc: RunContext) -> tuple[AirflowSettings, ResultStore, ServeGroup, NodeLease]:
    """What every task after `serve` needs: settings, the run's store, its group and the node lease."""
    settings = AirflowSettings.from_env()
    return settings, open_store(rc, settings), _group(served), _lease(served)


def _handle(served: dict[str, Any]) -> ServerHandle:
    return ServerHandle(**served["handle"])


def _lease(served: dict[str, Any]) -> NodeLease:
    return NodeLease.model_validate(served["lease"])


def download(work: dict[str, Any], rc: RunContext) -> dict[str, Any]:
    """Fetch weights (and the drafter) into the node cache; one download per cache domain."""
    store = open_store(rc)
    group = _group(work)
    with recorded_attempt(store, rc, group_id=group.id):
        if work["engine"] == "sim":
            log.info("sim engine: no weights to download for %s", group.model)
            return {"skipped": "sim"}
        from infersweep.engines.download import download_model, is_local_model

        recipe = Recipe.model_validate(work["recipe"])
        out: dict[str, Any] = {}
        for repo in filter(None, (recipe.model, recipe.draft_model)):
            if is_local_model(repo):
                out[repo] = {"skipped": "local path"}
                continue
            node = _nodes(work)[0] if work["nodes"] else None
            # On Postgres the per-(cache domain, repo, revision) lock is an advisory lock in the results DB.
            result = download_model(repo, hf_home=node.hf_home if node else None,
                                    cache_domain=(node.cache_domain or node.name) if node else "local",
                                    pg_url=store.url if store.url.startswith("postgresql") else None,
                                    token_conn_id=AirflowSettings.from_env().hf_conn_id)
            out[repo] = result.to_json()
        return out


def serve(work: dict[str, Any], rc: RunContext) -> dict[str, Any]:
    """Lease a node (reschedule while none is free), start the server, wait until it answers."""
    settings = AirflowSettings.from_env()
    store = open_store(rc, settings)
    group = _group(work)
    nodes = _nodes(work)
    with recorded_attempt(store, rc, group_id=group.id) as attempt:
        if not nodes:
            raise ClassifiedError(
                "config_error", f"no nodes in the inventory for runner label {group.runner!r}; add "
                f"`inventory: {{{group.runner}: [{{name: ..., docker-url: ...}}]}}` to the sweep file")
        register_nodes(store.engine, nodes)
        for stale in expire_stale(store.engine):
            log.warning("lease %s of %s expired (holder died?); its server will be reaped", stale.id, stale.holder)
        lease = _lease_or_reschedule(store, group, nodes, rc, settings)
        node = lease.node_spec(nodes)
        attempt["node"] = node.name
        _reap_orphans(node, store, work["engine"], settings)
        handle = _start(work, node, settings, store, rc, lease)
        return {**work, "handle": dataclasses.asdict(handle), "lease": lease.model_dump(mode="json"),
                "node": node.model_dump(mode="json", by_alias=True)}


def _lease_or_reschedule(store: ResultStore, group: ServeGroup, nodes: list[Node], rc: RunContext,
                         settings: AirflowSettings) -> NodeLease:
    """A node lease for this try, or `AirflowRescheduleException` when none is free: the worker slot goes
    back and the task asks again later (sensor reschedule semantics), after a delay that grows with the
    queue (`AirflowSettings.lease_poke_delay`)."""
    holder = LeaseHolder(dag_id=rc.dag_id, run_id=rc.run_id, group_id=group.id, try_number=rc.try_number)
    lease = acquire_lease(store.engine, runner=group.runner, holder=holder, ttl_s=settings.lease_ttl_s, nodes=nodes)
    if lease is not None:
        return lease
    from airflow.sdk.exceptions import AirflowRescheduleException

    waiting = _waiting(store, group.runner)
    delay = settings.lease_poke_delay(rc.reschedules, waiting=waiting, nodes=len(nodes))
    log.info("no free %s node for %s (%d groups waiting for %d nodes); rescheduling in %.0fs",
             group.runner, group.id, waiting, len(nodes), delay)
    raise AirflowRescheduleException(datetime.now(UTC) + timedelta(seconds=delay))


def _waiting(store: ResultStore, runner: str) -> int:
    """This run's groups still waiting for a `runner` node; 0 when the DB cannot say (plain backoff then)."""
    try:
        return store.waiting_groups(runner)
    except Exception as exc:
        log.warning("could not count waiting groups: %s", type(exc).__name__)
        return 0


def _reap_orphans(node: Node, store: ResultStore, engine_name: str, settings: AirflowSettings) -> None:
    """Stop servers whose task died with them, once a node is leased.

    Docker: infersweep containers on `node` whose run holds no live lease. Local servers (sim, process):
    every server this host recorded whose lease has ended (expired or released), whichever node it served:
    they all share this host's CPUs/GPUs.
    """
    from infersweep.engines.reaper import ServerRegistry, reap_local, reap_node

    if engine_name in LOCAL_ENGINES:
        try:
            for srv in reap_local(ServerRegistry(_registry_dir(settings)), lambda t: lease_active(store.engine, t)):
                log.warning("reaped orphan server %s of %s on %s (pids %s)%s", srv.server_id, srv.holder,
                            srv.node, list(srv.pids), "" if srv.removed else f": {srv.error}")
        except Exception as exc:  # never block a start on the reaper; the lease keeps the node exclusive
            log.warning("local reaper failed: %s", exc)
        return

    def run_active(run_id: str) -> bool:
        return any(lease.holder.split("/")[1] == run_id for lease in active_leases(store.engine))

    try:
        for gone in reap_node(node, run_active):
            log.warning("reaped orphan container %s (run %s) on %s", gone.name, gone.run_id, node.name)
    except Exception as exc:  # the start that follows reports an unreachable engine with its own class
        log.warning("reaper on %s failed: %s", node.name, exc)


#: Backends whose servers run on the worker's host (reaped through the local registry, not Docker labels).
LOCAL_ENGINES = ("sim", "vllm-process")


def _registry_dir(settings: AirflowSettings) -> Path:
    """This host's record of the local servers it started (the reaper's evidence)."""
    return settings.work_dir / "local-servers"


def _register(handle: ServerHandle, server_id: str, lease: NodeLease, settings: AirflowSettings) -> None:
    from infersweep.engines.reaper import LocalServer, ServerRegistry

    ServerRegistry(_registry_dir(settings)).add(LocalServer.from_pid(
        server_id=server_id, lease_token=lease.token, lease_id=lease.id, node=lease.node, holder=lease.holder,
        pid=int(handle.extra["pid"]), pgid=int(handle.extra.get("pgid") or handle.extra["pid"]),
        create_time=handle.extra.get("create_time"), log_path=handle.log_path))


def _relet(served: dict[str, Any], rc: RunContext, settings: AirflowSettings) -> dict[str, Any]:
    """`served` whose lease still holds; else a new lease (rescheduling while no node is free).

    A retried task whose worker was killed finds its lease expired once the TTL has passed: the node may
    already serve another group and the old server is an orphan. Then the task leases a node again as its
    own try, reaps orphans (its old server among them) and returns `served` with the new lease and node;
    the dead-server check that follows starts a fresh server there. A database that cannot be reached
    counts as "lease still held" until the expiry it last confirmed (see `heartbeat`).
    """
    from infersweep.store.spool import UNAVAILABLE

    store = open_store(rc, settings)
    lease = _lease(served)
    try:
        expire_stale(store.engine)  # our own lease too, if this task outlived its TTL
    except UNAVAILABLE as exc:
        log.warning("could not expire stale leases (results DB unreachable: %s)", type(exc).__name__)
    try:
        heartbeat(store.engine, lease, ttl_s=settings.lease_ttl_s)
        return served
    except LeaseLost:
        pass
    group, nodes = _group(served), _nodes(served)
    new = _lease_or_reschedule(store, group, nodes, rc, settings)
    node = new.node_spec(nodes)
    log.warning("%s: lease %s on %s expired (its task died?); re-leased %s as lease %s", group.id, lease.id,
                lease.node, node.name, new.id)
    _reap_orphans(node, store, served["engine"], settings)
    try:  # normally the reaper just did it; a server it has no record of must not keep serving either
        _engine(served, settings, rc.run_id).stop(_handle(served), grace_s=10)
    except Exception as exc:
        log.warning("%s: could not stop the server of the expired lease: %s", group.id, exc)
    relet = {**served, "lease": new.model_dump(mode="json"), "node": node.model_dump(mode="json", by_alias=True)}
    _save_current(relet, settings, rc)
    return relet


def _start(work: dict[str, Any], node: Node, settings: AirflowSettings, store: ResultStore, rc: RunContext,
           lease: NodeLease) -> ServerHandle:
    group = _group(work)
    engine = _engine(work, settings, rc.run_id)
    recipe = Recipe.model_validate(work["recipe"])
    if work["engine"] in ("sim", "vllm-process"):
        recipe = recipe.with_port(free_port())
    recipe = recipe.model_copy(update={"serve_group": group.id})
    server_id = uuid.uuid4().hex
    if work["engine"] in LOCAL_ENGINES:
        # The marker lets the reaper recognise this server's processes (and only them) if its task dies.
        from infersweep.engines.reaper import SERVER_MARKER_ENV

        recipe = recipe.model_copy(update={"env": {**recipe.env, SERVER_MARKER_ENV: server_id}})
    started = time.monotonic()
    handle: ServerHandle | None = None
    try:
        handle = engine.start(recipe, node)
        if work["engine"] in LOCAL_ENGINES:
            _register(handle, server_id, lease, settings)
        engine.wait_ready(handle)
    except BaseException as exc:
        # A half-started server is stopped here: the teardown only runs after a successful setup. Stopping
        # or releasing may fail too (dockerd or the DB restarting): the reaper and the lease TTL clean up
        # then, and the start's own error is what gets classified.
        text = ""
        if handle is not None:
            try:
                text = engine.stop(handle)
            except Exception as stop_exc:
                log.warning("%s: could not stop the half-started server: %s", group.id, stop_exc)
        if text:
            store.record_server_log(group_id=group.id, text=text, try_number=rc.try_number, node=node.name)
        try:
            release(store.engine, lease)
        except Exception as rel_exc:
            log.warning("%s: could not release lease %s (it expires after its TTL): %s", group.id, lease.id,
                        rel_exc)
        store.record_group({"id": group.id}, status="failed", node=node.name)
        # The class goes on the group and on each pending point, so summaries and reports show why.
        store.fail_group(group.id, exc, concs=work["concs"], isl=group.isl, osl=group.osl)
        if isinstance(exc, EngineError):
            raise
        raise EngineError(f"{group.id}: server failed to start on {node.name}: {exc}") from exc
    store.record_group({"id": group.id}, status="serving", node=node.name,
                       model_load_s=round(time.monotonic() - started, 3), engine=work["engine"],
                       engine_version=handle.engine_version, image_digest=handle.image_digest)
    log.info("%s ready on %s at %s (%s)", group.id, node.name, handle.base_url, handle.engine_version)
    return handle


def _bench_config(served: dict[str, Any], conc: int, *, warmup_only: bool = False) -> Any:
    from infersweep.bench import BenchConfig

    group = _group(served)
    bench = served["bench"]
    recipe = served["recipe"]
    tokenizer = str(sim_tokenizer_dir()) if served["engine"] == "sim" else recipe["model"]
    return BenchConfig(
        base_url=served["handle"]["base_url"], model=recipe.get("served_model_name") or recipe["model"],
        tokenizer=tokenizer, isl=group.isl, osl=group.osl, conc=conc,
        num_prompts=conc * (bench["warmups_per_conc"] if warmup_only else bench["prompts_per_conc"]),
        warmups=0 if warmup_only else conc * bench["warmups_per_conc"],
        random_range_ratio=bench["random_range_ratio"], gpus=group.gpus,
        metadata={"config_key": group.config_key, "serve_group": group.id, "image": served["image"],
                  "recipe_fingerprint": served["fingerprint"], "engine": served["engine"]},
    )


@contextlib.contextmanager
def _telemetry(served: dict[str, Any], store: ResultStore, try_number: int) -> Iterator[Any]:
    """GPU power/clock/utilisation sampled once a second while the benchmark runs (modelled on the sim).

    The series is stored with the group (as its `gpu-telemetry` log, JSON lines), failures included.
    """
    from infersweep.engines.telemetry import TelemetrySampler, source_for

    sampler = TelemetrySampler(source_for(_handle(served)), interval_s=1.0)
    sampler.start()
    try:
        yield sampler
    finally:
        series = sampler.stop()
        store.record_server_log(group_id=served["group"]["id"], source="gpu-telemetry", try_number=try_number,
                                node=served["node"]["name"],
                                text="\n".join(json.dumps(s.to_json()) for s in series))


def _energy(served: dict[str, Any], sampler: Any, result: dict[str, Any]) -> dict[str, Any]:
    """Energy per output token and average power over the measured window (InferenceX's integration), with
    the window's readings as InferenceX's `gpu_metrics.csv` text; nulls with a reason if unreadable."""
    from infersweep.engines.gpu_metrics import measure_point

    point = measure_point(sampler, result, expected_gpus=_group(served).gpus)
    out = dataclasses.asdict(point.energy)
    scale = float(served.get("sim", {}).get("time_scale", 1.0)) if served["engine"] == "sim" else 1.0
    if scale != 1.0:
        # The sim's modelled watts are real; its seconds are compressed: energy and J/token stretch with time.
        for key in ("energy_j", "joules_per_token"):
            if out[key] is not None:
                out[key] *= scale
        out["per_gpu_energy_j"] = {g: e * scale for g, e in out["per_gpu_energy_j"].items()}
        if out["tokens_per_s_per_mw"] is not None:
            out["tokens_per_s_per_mw"] /= scale
    # Wall-clock timestamps, like benchmark_*_time_unix: with the client's wall-clock result JSON,
    # aggregate_power.py reproduces the unscaled figures.
    out["gpu_metrics_csv"] = point.csv_text
    return out


#: Per-request lists kept only in the raw client JSON, not in the metrics JSON.
_PER_REQUEST = frozenset({"input_lens", "output_lens", "ttfts", "itls", "latencies", "start_times", "errors",
                          "generated_texts", "tpots"})


def measured(served: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A client result in the store's shape: headline metrics, the raw JSON, client_bound and pass/fail.

    Against the time-scaled simulator the figures are first converted to simulated time.
    """
    if served["engine"] == "sim":
        from infersweep.bench.timescale import to_simulated_time

        result = to_simulated_time(result, float(served["sim"]["time_scale"]))
    verdict = result.get("infersweep", {})
    return {
        "metrics": {k: v for k, v in result.items() if k not in _PER_REQUEST and k != "infersweep"},
        "raw": result,
        "client_bound": bool(verdict.get("client_bound", False)),
        "status": "ok" if verdict.get("passed", False) else "failed",
        "error": "; ".join(verdict.get("fail_reasons", [])) or None,
    }


def warmup(served: dict[str, Any], rc: RunContext) -> dict[str, Any]:
    """Untimed requests at the group's highest concurrency, with distinct prompts (JIT, graphs, allocator)."""
    from infersweep.bench import run_benchmark

    store = open_store(rc)
    group = _group(served)
    with recorded_attempt(store, rc, group_id=group.id, node=served["node"]["name"]):
        todo = served["concs"] or list(group.concs)
        result = run_benchmark(_bench_config(served, max(todo), warmup_only=True))
        return {"requests": result.get("completed"), "failed": result.get("failed")}


def _replacement_file(settings: AirflowSettings, rc: RunContext, group_id: str) -> Path:
    return settings.work_dir / "servers" / f"{_safe(rc.dag_id)}__{_safe(rc.run_id)}__{group_id}.json"


def _current(served: dict[str, Any], settings: AirflowSettings, rc: RunContext) -> dict[str, Any]:
    """`served` with the replacement server's handle when a benchmark retry restarted a dead server.

    The replacement is recorded on the worker's disk (local servers live on that host anyway; a docker
    replacement keeps the container name, so the orphan reaper finds it if a teardown elsewhere misses it).
    """
    path = _replacement_file(settings, rc, served["group"]["id"])
    if path.is_file():
        data = json.loads(path.read_text())
        # {handle, lease, node}: a retry whose lease had expired also leased a node again (`_relet`).
        return {**served, **data} if "handle" in data else {**served, "handle": data}
    return served


def _save_current(served: dict[str, Any], settings: AirflowSettings, rc: RunContext) -> None:
    """Record the group's current server handle, lease and node for the tasks after this one."""
    path = _replacement_file(settings, rc, served["group"]["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: served[k] for k in ("handle", "lease", "node")}))
    tmp.replace(path)


def _alive(engine: Engine, handle: ServerHandle, *, probes: int = 3, timeout_s: float = 10.0) -> bool:
    """The server's process (when the backend can tell) is running and `/health` answers 200."""
    from infersweep.engines.readiness import http_get

    is_alive = getattr(engine, "is_alive", None)
    if is_alive is not None and not is_alive(handle):
        return False
    for i in range(probes):  # a server that just finished a burst may be slow to answer once
        if http_get(f"{handle.base_url}/health", timeout_s)[0] == 200:
            return True
        if i + 1 < probes:
            time.sleep(1.0)
    return False


def _death(served: dict[str, Any], engine: Engine, conc: int) -> ClassifiedError | None:
    """None while the server lives; else the error that classifies its death (root cause from its log).

    A log naming a known root cause (CUDA OOM, illegal memory access, NCCL …) keeps that class and its retry
    semantics; a server that just vanished is `server_died`, transient (retried once, on a fresh server).
    """
    from infersweep.faults.classify import classify

    handle = _handle(served)
    if _alive(engine, handle):
        return None
    tail = engine.logs(handle, tail=40)
    kind = classify(tail).kind
    kind = "server_died" if kind in ("unknown", "server_not_ready") else kind
    return ClassifiedError(kind, f"{served['group']['id']}: the server on {served['node']['name']} died during "
                                 f"conc {conc}; last log lines:\n{tail}", transient=kind == "server_died" or None)


def _restart(served: dict[str, Any], rc: RunContext, settings: AirflowSettings, store: ResultStore,
             lease: NodeLease, warm_conc: int) -> dict[str, Any]:
    """A retry found its server dead: keep the dead one's log, start a fresh server on the same leased node,
    warm it up, and record its handle for evaluate and teardown."""
    from infersweep.bench import run_benchmark

    group = _group(served)
    engine = _engine(served, settings, rc.run_id)
    text = engine.stop(_handle(served))
    if text:
        store.record_server_log(group_id=group.id, text=text, try_number=rc.try_number, source="server-died",
                                node=lease.node)
    heartbeat(store.engine, lease, ttl_s=settings.lease_ttl_s)
    log.warning("%s: server on %s is gone; restarting it for try %d", group.id, lease.node, rc.try_number)
    node = Node.model_validate(served["node"])
    handle = _start(served, node, settings, store, rc, lease)
    fresh = {**served, "handle": dataclasses.asdict(handle)}
    _save_current(fresh, settings, rc)
    run_benchmark(_bench_config(fresh, warm_conc, warmup_only=True))  # measure on a warm server, as in try 1
    return fresh


def benchmark(served: dict[str, Any], rc: RunContext) -> dict[str, Any]:
    """Every pending concurrency, ascending; each point is stored as it finishes, a retry resumes.

    A server that dies mid-point fails the point (and the task) with its class; the retry starts a fresh
    server under the same lease and measures only the points without a successful row.
    """
    from infersweep.bench import run_benchmark

    settings = AirflowSettings.from_env()
    served = _relet(_current(served, settings, rc), rc, settings)
    settings, store, group, lease = _served_context(served, rc)
    with recorded_attempt(store, rc, group_id=group.id, node=lease.node):
        done = store.finished_points(group.id)
        todo = sorted(set(served["concs"]) - done)
        engine = _engine(served, settings, rc.run_id)
        if todo and not _alive(engine, _handle(served)):
            served = _restart(served, rc, settings, store, lease, max(todo))
        with _telemetry(served, store, rc.try_number) as sampler:
            _measure(served, todo, done, group, settings, store, lease, sampler, engine, run_benchmark)
        return {"measured": todo, "skipped": sorted(done & set(served["concs"]))}


def _measure(served: dict[str, Any], todo: list[int], done: set[int], group: ServeGroup,
             settings: AirflowSettings, store: ResultStore, lease: NodeLease, sampler: Any, engine: Engine,
             run_benchmark: Any) -> None:
    for conc in sorted(done & set(served["concs"])):
        log.info("%s conc %d already measured in this run; skipping", group.id, conc)
    failed: list[str] = []
    identity = {"engine": served["engine"], "image": served["image"],
                "image_digest": served["handle"].get("image_digest"),
                "recipe_fingerprint": served["fingerprint"],
                "engine_version": served["handle"].get("engine_version"),
                "config_key": group.config_key, "gpus": group.gpus}
    for conc in todo:
        heartbeat(store.engine, lease, ttl_s=settings.lease_ttl_s)
        try:
            result = run_benchmark(_bench_config(served, conc))
            result.setdefault("infersweep", {})["energy"] = _energy(served, sampler, result)
        except Exception as exc:
            died = _death(served, engine, conc)
            store.record_benchmark(group_id=group.id, isl=group.isl, osl=group.osl, conc=conc,
                                   error=died or exc, **identity)
            if died is not None:
                raise died from exc
            raise
        point = measured(served, result)
        died = _death(served, engine, conc) if point["status"] != "ok" else None
        store.record_benchmark(group_id=group.id, isl=group.isl, osl=group.osl, conc=conc, result=point,
                               error=died, **identity)
        if died is not None:
            raise died
        if point["status"] != "ok":
            failed.append(f"conc {conc}: {point['error'] or 'failed'}")
        m = point["metrics"]
        log.info("%s conc %d: %.1f tok/s/gpu, median TPOT %.2f ms [%s]", group.id, conc,
                 (m.get("total_token_throughput") or 0.0) / group.gpus, m.get("median_tpot_ms") or 0.0,
                 point["status"])
    if failed:
        text = f"{group.id}: benchmark points failed: " + " | ".join(failed)
        kind = "length_mismatch" if all("length violations" in f for f in failed) else "failed_requests_over_threshold"
        raise ClassifiedError(kind, text)


def evaluate(served: dict[str, Any], rc: RunContext) -> dict[str, Any]:
    """gsm8k (lm-eval scoring) at the group's eval concurrencies on the running server."""
    from infersweep.evals.gsm8k import run_gsm8k

    settings = AirflowSettings.from_env()
    served = _relet(_current(served, settings, rc), rc, settings)
    settings, store, group, lease = _served_context(served, rc)
    ev = served["eval"]
    out: dict[str, Any] = {}
    with recorded_attempt(store, rc, group_id=group.id, node=lease.node):
        below: list[str] = []
        for conc in served["eval_concs"]:
            heartbeat(store.engine, lease, ttl_s=settings.lease_ttl_s)
            result = run_gsm8k(
                served["handle"]["base_url"], served["recipe"].get("served_model_name") or served["recipe"]["model"],
                limit=ev.get("limit"), concurrency=conc, data_dir=ev.get("data_dir") or _default_gsm8k_dir(),
                context_len=group.max_model_len, model_prefix=group.model_prefix,
                out=settings.work_dir / "evals" / rc.run_id / f"{group.id}_conc{conc}.jsonl",
            )
            # The sweep file's floor for this model-prefix (InferenceX rule: both filters must reach it).
            threshold = float(result.threshold if ev.get("threshold") is None else ev["threshold"])
            passed = result.flexible_extract >= threshold and result.strict_match >= threshold
            record = {**result.store_record(), "isl": group.isl, "osl": group.osl, "threshold": threshold,
                      "passed": passed}
            store.record_eval(
                group_id=group.id, task=result.task, conc=conc, engine=served["engine"],
                image_digest=served["handle"].get("image_digest"), recipe_fingerprint=served["fingerprint"],
                result=record, samples=result.store_samples(),
            )
            out[str(conc)] = {"strict": result.strict_match, "flexible": result.flexible_extract, "n": result.n}
            if not passed:
                below.append(f"conc {conc}: strict {result.strict_match:.3f} / flexible "
                             f"{result.flexible_extract:.3f} < {threshold:.2f}")
        if below:
            raise ClassifiedError("accuracy_below_threshold", f"{group.id}: " + "; ".join(below))
        return out


def teardown(served: dict[str, Any], rc: RunContext) -> dict[str, Any]:
    """Stop the server (logs first), store the log, release the lease, flush the spool.

    If a benchmark retry replaced a dead server, the replacement is stopped too (the original again: idempotent).
    """
    settings, store, group, lease = _served_context(served, rc)
    with recorded_attempt(store, rc, group_id=group.id, node=lease.node):
        engine = _engine(served, settings, rc.run_id)
        current = _current(served, settings, rc)
        text = engine.stop(_handle(current))
        if current is not served:
            engine.stop(_handle(served))
            _replacement_file(settings, rc, group.id).unlink(missing_ok=True)
        store.record_server_log(group_id=group.id, text=text, try_number=rc.try_number, node=lease.node)
        released = release(store.engine, lease)
        if current is not served:  # a retry that re-leased a node holds that lease now
            released = release(store.engine, _lease(current)) or released
        store.record_group({"id": group.id}, status="done", finished_at=datetime.now(UTC))
        flushed = store.flush()
        return {"released": released, "log_bytes": len(text), "spool_complete": flushed.complete}
