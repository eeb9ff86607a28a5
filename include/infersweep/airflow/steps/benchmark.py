"""warmup and benchmark: every concurrency of the group on its one server, each point stored as it finishes.

A retry resumes at the first point without a successful row, on a fresh server if the old one died, on a
new lease if the old one expired.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

from infersweep.airflow import server
from infersweep.airflow.context import RunContext, recorded_attempt
from infersweep.airflow.deps import ChainDeps
from infersweep.airflow.lease import keep_or_relet
from infersweep.airflow.payloads import ServedGroup, StepOutcome
from infersweep.bench.point import PointResult
from infersweep.engines.base import Engine
from infersweep.engines.factory import sim_tokenizer_dir
from infersweep.faults.errors import ClassifiedError
from infersweep.store.leases import heartbeat_all

log = logging.getLogger(__name__)


def bench_config(served: ServedGroup, conc: int, *, warmup_only: bool = False) -> Any:
    """The client's settings for one point (or its warm-up) of this group on its current server."""
    from infersweep.bench import BenchConfig

    group, bench, recipe = served.group, served.bench, served.recipe
    return BenchConfig(
        base_url=served.state.handle.base_url, model=recipe.served_model_name or recipe.model,
        tokenizer=str(sim_tokenizer_dir()) if served.engine == "sim" else recipe.model,
        isl=group.isl, osl=group.osl, conc=conc,
        num_prompts=conc * (bench.warmups_per_conc if warmup_only else bench.prompts_per_conc),
        warmups=0 if warmup_only else conc * bench.warmups_per_conc,
        random_range_ratio=bench.random_range_ratio, gpus=group.gpus,
        # Disaggregated: InferenceX divides output throughput by the decode pool's GPUs, input by the prefill's.
        **({"prefill_gpus": group.pool_gpus("prefill"), "decode_gpus": group.pool_gpus("decode")}
           if group.pool_gpus("prefill") else {}),
        # The endpoint and client-side chat template InferenceX's script uses for this key (recipes/data/client.yaml).
        **recipe.client.bench_options(),
        metadata={"config_key": group.config_key, "serve_group": group.id, "image": served.image,
                  "recipe_fingerprint": served.fingerprint, "engine": served.engine},
    )


def warmup(served: ServedGroup, rc: RunContext, deps: ChainDeps | None = None) -> StepOutcome:
    """Untimed requests at the group's highest concurrency, with distinct prompts (JIT, graphs, allocator)."""
    deps = deps or ChainDeps.for_run(rc)
    served = server.current(deps, served)
    with recorded_attempt(deps.store, rc, group_id=served.group.id, node=served.state.node.name):
        top = max(served.concs or served.group.concs)
        result = deps.run_benchmark(bench_config(served, top, warmup_only=True))
        return StepOutcome(group_id=served.group.id,
                           detail=f"{result.get('completed')} warm-up requests, {result.get('failed')} failed")


def on_live_lease(deps: ChainDeps, served: ServedGroup, rc: RunContext, engine: Engine) -> ServedGroup:
    """`served` on its current server, with a lease that still holds (re-leased after an expiry: the old
    server is an orphan then, stopped here, and the dead-server check that follows starts a fresh one)."""
    served = server.current(deps, served)
    state = served.state
    renewed = keep_or_relet(deps, served.group, served.nodes, state.all_leases, rc)
    if renewed is None:
        return served
    new = renewed[0]
    node = new.node_spec(served.nodes)
    for held in renewed:
        deps.reap(deps, held.node_spec(served.nodes), served.engine)
    try:  # normally the reaper just did it; a server it has no record of must not keep serving either
        engine.stop(state.handle, grace_s=10)
    except Exception as exc:
        log.warning("%s: could not stop the server of the expired lease: %s", served.group.id, exc)
    relet = served.with_state(state.model_copy(update={
        "lease": new, "node": node, "leases": tuple(renewed) if served.group.multinode else ()}))
    server.record_state(deps, relet)
    return relet


def benchmark(served: ServedGroup, rc: RunContext, deps: ChainDeps | None = None) -> StepOutcome:
    """Every pending concurrency, ascending (or those the run's point policy picks, see `airflow.policies`);
    each point is stored as it finishes, a retry resumes.

    A server that dies mid-point fails the point (and the task) with its class; the retry starts a fresh
    server under the same lease and measures only the points without a successful row.
    """
    from infersweep.airflow import policies

    deps = deps or ChainDeps.for_run(rc)
    engine = deps.engine(served, rc)
    served = on_live_lease(deps, served, rc, engine)
    group = served.group
    policy = policies.mode(served, rc.params)
    with recorded_attempt(deps.store, rc, group_id=group.id, node=served.state.lease.node):
        done = deps.store.finished_points(group.id)
        todo = sorted(set(served.concs) - done)
        for conc in sorted(done & set(served.concs)):
            log.info("%s conc %d already measured in this run; skipping", group.id, conc)
        if (todo or policy != "off") and not server.alive(deps, engine, served.state.handle):
            served = server.restart(deps, engine, served, rc)
            # measure on a warm server, as in the first try
            deps.run_benchmark(bench_config(served, max(todo or served.concs), warmup_only=True))
        with telemetry(deps, served, rc.try_number) as sampler:
            points = PointMeasurer(deps, served, sampler, engine, rc)
            if policy == "frontier":
                todo = policies.run_frontier(deps.store, served, rc, points.measure)
            elif policy == "slo":
                todo = policies.run_slo(deps.store, served, rc, points.measure)
            else:
                for conc in todo:
                    points.measure(conc)
        points.raise_failures()
        return StepOutcome(group_id=group.id, measured=tuple(todo), skipped=tuple(sorted(done & set(served.concs))),
                           detail=f"policy {policy}")


@contextlib.contextmanager
def telemetry(deps: ChainDeps, served: ServedGroup, try_number: int) -> Iterator[Any]:
    """GPU power/clock/utilisation sampled once a second while the benchmark runs (modelled on the sim).

    The series is stored with the group (as its `gpu-telemetry` log, JSON lines), failures included.
    """
    from infersweep.telemetry.gpu import TelemetrySampler, source_for

    sampler = TelemetrySampler(source_for(served.state.handle, runner=served.state.node.runner), interval_s=1.0)
    sampler.start()
    try:
        yield sampler
    finally:
        series = sampler.stop()
        deps.store.record_server_log(group_id=served.group.id, source="gpu-telemetry", try_number=try_number,
                                     node=served.state.node.name,
                                     text="\n".join(json.dumps(s.to_json()) for s in series))


class PointMeasurer:
    """Measures and stores one point at a time on the group's server (n times with `repeats`), keeping the
    failures to raise once the policy has finished: a failed top end still lets the lower points run."""

    def __init__(self, deps: ChainDeps, served: ServedGroup, sampler: Any, engine: Engine, rc: RunContext) -> None:
        self.deps, self.served, self.sampler, self.engine, self.rc = deps, served, sampler, engine, rc
        self.failed: list[str] = []
        handle = served.state.handle
        self.identity: dict[str, Any] = {
            "engine": served.engine, "image": served.image, "image_digest": handle.image_digest,
            "recipe_fingerprint": served.fingerprint, "engine_version": handle.engine_version,
            "config_key": served.group.config_key, "gpus": served.group.gpus}

    def _run(self, conc: int) -> PointResult:
        """One benchmark run of `conc`, its energy attached; a dead server is stored and raised with its class."""
        from infersweep.telemetry.gpu_metrics import point_energy

        served, deps, group = self.served, self.deps, self.served.group
        heartbeat_all(deps.store.engine, served.state.all_leases, ttl_s=deps.settings.lease_ttl_s)
        try:
            result = deps.run_benchmark(bench_config(served, conc))
            extra = result.setdefault("infersweep", {})
            extra["energy"] = point_energy(self.sampler, result, expected_gpus=group.gpus,
                                           time_scale=served.time_scale)
            cost = served.state.node.cost_per_gpu_hour
            if cost is not None:  # the owner's price of this node's GPUs, for $/Mtok in reports
                extra["cost_per_gpu_hour"] = cost
        except Exception as exc:
            died = server.death(deps, served, self.engine, conc)
            deps.store.record_benchmark(group_id=group.id, isl=group.isl, osl=group.osl, conc=conc,
                                        error=died or exc, **self.identity)
            if died is not None:
                raise died from exc
            raise
        return PointResult.from_client(result, time_scale=served.time_scale)

    def measure(self, conc: int) -> PointResult:
        """Measure `conc` (n repeats on the same server), store it with its confidence intervals, return it."""
        from infersweep.airflow.policies import repeats
        from infersweep.bench.intervals import combine_repeats, point_intervals

        served, deps, group = self.served, self.deps, self.served.group
        n = repeats(served, self.rc.params, conc)
        runs = []
        for _ in range(n):
            point = self._run(conc)
            runs.append(point)
            if not point.ok:
                break  # a failed repeat fails the point; more runs would not change that
        first = runs[0]
        raws = [p.raw or {} for p in runs]
        died = server.death(deps, served, self.engine, conc) if not runs[-1].ok else None
        point, intervals, repeat_rows = first, {}, None
        if all(p.ok for p in runs):
            if n > 1:
                values, found = combine_repeats(raws, gpus=group.gpus)
                point = _with_means(first, values, group.gpus)
                repeat_rows = [{"repeat": i, "metrics": p.metrics, "raw": p.raw} for i, p in enumerate(runs)]
            else:
                found = point_intervals(raws[0], gpus=group.gpus)
            intervals = {k: v.to_json() for k, v in found.items()}
        else:
            point = runs[-1]
        deps.store.record_benchmark(group_id=group.id, isl=group.isl, osl=group.osl, conc=conc, result=point,
                                    error=died, intervals=intervals or None, repeats=repeat_rows, **self.identity)
        if died is not None:
            raise died
        if not point.ok:
            self.failed.append(f"conc {conc}: {point.error or 'failed'}")
        tput = intervals.get("tput_per_gpu")
        band = f" [{tput['lo']:.1f}, {tput['hi']:.1f}] ({tput['method']}, n={tput['n']})" if tput else ""
        log.info("%s conc %d: %.1f tok/s/gpu%s, median TPOT %.2f ms [%s]%s", group.id, conc,
                 (point.metrics.get("total_token_throughput") or 0.0) / group.gpus, band,
                 point.metrics.get("median_tpot_ms") or 0.0, point.status, f", {n} repeats" if n > 1 else "")
        return point

    def raise_failures(self) -> None:
        """Fail the task (with its class) when a point failed, after every point the policy wanted was run."""
        if self.failed:
            text = f"{self.served.group.id}: benchmark points failed: " + " | ".join(self.failed)
            kind = ("length_mismatch" if all("length violations" in f for f in self.failed)
                    else "failed_requests_over_threshold")
            raise ClassifiedError(kind, text)


#: The client metric behind each interval the store keeps (per-GPU ones are scaled back to the server).
_CLIENT_METRIC = {"tput_per_gpu": "total_token_throughput", "output_tput_per_gpu": "output_throughput"}


def _with_means(point: PointResult, values: dict[str, float], gpus: int) -> PointResult:
    """The first repeat's point with its headline metrics replaced by the mean over the repeats (the raw
    JSON stays the first repeat's; every repeat's is kept in the row's `repeats`)."""
    metrics = dict(point.metrics)
    for name, value in values.items():
        if name in _CLIENT_METRIC:
            metrics[_CLIENT_METRIC[name]] = value * gpus
        elif name in metrics:
            metrics[name] = value
    return point.model_copy(update={"metrics": metrics})
