"""What crosses the Airflow task boundaries of a serve-group chain, as pydantic models validated once.

`plan` hands each mapped group a `WorkItem`; `serve` hands the rest of the chain a `ServedGroup` (the work
item plus the started server, its node and lease). Airflow's serde serialises pydantic models into XCom and
validates them back (`allow_class` below registers ours, as `[core] allowed_deserialization_classes` would).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from infersweep.config.adaptive import AdaptiveSettings, RepeatSettings
from infersweep.config.inventory import Node
from infersweep.config.settings import BenchSettings, SimSettings
from infersweep.engines.base import ServerHandle
from infersweep.plan.models import ServeGroup
from infersweep.recipes.model import Recipe
from infersweep.recipes.topology import TopologyRecipe
from infersweep.store.leases import NodeLease


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvalPlan(_Payload):
    """The gsm8k eval of a group: task, question limit, pass threshold and a local data copy if any."""

    task: str = "gsm8k"
    limit: int | None = Field(default=None, gt=0)
    threshold: float | None = Field(default=None, ge=0, le=1)
    data_dir: str | None = None


class WorkItem(_Payload):
    """One serve group of a run, as `plan` decided it: what to serve, where it may run, what to measure."""

    group: ServeGroup
    recipe: Recipe
    fingerprint: str = Field(description="recipe fingerprint, the reuse key stored with every result")
    engine: str = Field(description="backend: sim | vllm-docker | vllm-process")
    image: str
    nodes: tuple[Node, ...] = Field(description="inventory nodes of the group's runner label")
    concs: tuple[int, ...] = Field(description="concurrencies still to measure in this run (ascending)")
    eval_concs: tuple[int, ...] = ()
    bench: BenchSettings = Field(default_factory=BenchSettings)
    eval: EvalPlan = Field(default_factory=EvalPlan)
    sim: SimSettings = Field(default_factory=SimSettings)
    adaptive: AdaptiveSettings = Field(default_factory=AdaptiveSettings)
    repeats: RepeatSettings = Field(default_factory=RepeatSettings)
    topology: TopologyRecipe | None = Field(
        default=None, description="multinode: every process of the server and where it runs (`recipe` is its entry's)")

    @property
    def time_scale(self) -> float:
        """Simulated seconds per wall second (1 for real engines)."""
        return self.sim.time_scale if self.engine == "sim" else 1.0


class ServerState(_Payload):
    """A group's running server: its handle, the node it runs on and the lease that holds that node.

    The current state also lives on the group's `serve_groups` row (`ResultStore.record_server`), so a retry
    on another worker finds a replacement server and a renewed lease."""

    handle: ServerHandle
    node: Node
    lease: NodeLease
    #: A multinode group's whole lease set (taken all or none; `lease` is its head node's); empty otherwise.
    leases: tuple[NodeLease, ...] = ()

    @property
    def all_leases(self) -> tuple[NodeLease, ...]:
        """Every lease the server holds: the set, or the one lease of a single-node server."""
        return self.leases or (self.lease,)


class ServedGroup(WorkItem):
    """A work item whose server is up: what `serve` hands warmup, benchmark, evaluate and teardown."""

    state: ServerState

    def with_state(self, state: ServerState) -> ServedGroup:
        """The same group on another server, node or lease (a restart or a re-lease)."""
        return self.model_copy(update={"state": state})


class StepOutcome(_Payload):
    """What a chain step did, for its XCom and the task log (the results themselves are in the store)."""

    group_id: str
    measured: tuple[int, ...] = Field(default=(), description="concurrencies measured or evaluated by this try")
    skipped: tuple[int, ...] = Field(default=(), description="concurrencies an earlier try already finished")
    detail: str = ""


class RepoDownload(_Payload):
    """One repo's download (`artifacts.download.DownloadResult`), or why it was skipped."""

    repo_id: str
    skipped: str | None = Field(default=None, description="why nothing was fetched (local path, simulator)")
    path: str | None = None
    revision: str | None = None
    commit: str | None = None
    downloaded: bool = False
    attempts: int = 0
    total_bytes: int | None = None
    files: int | None = None
    seconds: float = 0.0
    errors: tuple[str, ...] = ()


class DownloadReport(_Payload):
    """What the download step fetched for a group, per repo (model, then drafter)."""

    group_id: str
    repos: dict[str, RepoDownload] = Field(default_factory=dict)


class RunOutcome(_Payload):
    """How a run ended: status, the points label ("53/55 green"), failures by class and the report path."""

    status: str
    label: str | None = None
    failures: dict[str, int] = Field(default_factory=dict)
    not_executed: dict[str, int] = Field(default_factory=dict)
    report: str | None = None
    policy: dict[str, Any] = Field(default_factory=dict, description="adaptive / SLO decisions: counts and lines")


class RunVerdict(_Payload):
    """The `verdict` task's judgement of a sweep run (`airflow.verdict.run_verdict`): whether every planned
    point and eval was measured and green, and if not, why, counted by failure class."""

    dag_id: str
    run_id: str
    config_key: str | None = None
    images: tuple[str, ...] = ()
    dry_run: bool = False
    points_planned: int = 0
    points_ok: int = Field(default=0, description="green points, reused ones included")
    points_reused: int = Field(default=0, description="green points copied from an earlier run (not failures)")
    points_failed: int = 0
    points_not_measured: int = Field(default=0, description="planned points without any stored row")
    failed_by_class: dict[str, int] = Field(default_factory=dict, description="failed points per failure class")
    not_measured: tuple[str, ...] = Field(default=(), description="which groups left points unmeasured, and why")
    eval_failures: tuple[str, ...] = Field(default=(), description="evals below threshold, failed or missing")
    stuck_nodes: tuple[str, ...] = Field(default=(), description="leases of this run that expired unreleased")
    reasons: tuple[str, ...] = Field(default=(), description="why the run failed; empty when it passed")
    note: str = Field(description="the DAG run note: one line per reason, or the green summary")

    @property
    def failed(self) -> bool:
        """Whether the run must end failed."""
        return bool(self.reasons)


class SweepRunRef(_Payload):
    """A finished sweep run, as its results asset event names it."""

    dag_id: str
    run_id: str


class Regression(_Payload):
    """One regressed point of the gate: how much it dropped and the noise band it was judged against."""

    point: str = Field(description="topology, seq-len and conc")
    metric: str = Field(description="the regressed metric, or `status` for a point that now fails")
    change_pct: float | None = Field(default=None, description="relative change vs the baseline, in percent")
    noise_pct: float | None = Field(default=None, description="the gate's noise band for it, in percent")

    def describe(self) -> str:
        """`tp1 4096/64 conc 4: tput_per_gpu -12.3% (noise band ±4.0%)`."""
        if self.change_pct is None:
            return f"{self.point}: {self.metric} now failing"
        band = f" (noise band ±{self.noise_pct:.1f}%)" if self.noise_pct is not None else ""
        return f"{self.point}: {self.metric} {self.change_pct:+.1f}%{band}"


class RunReport(_Payload):
    """The report DAG's verdict for one sweep run: its report, and the gate against the previous image."""

    dag_id: str
    run_id: str
    report: str
    baseline: str | None = Field(default=None, description="the previous image's run, when there is one")
    compare: str | None = Field(default=None, description="the comparison page")
    gate: str | None = Field(default=None, description="the gate's one-line summary")
    regressions: int = 0
    regressed: bool = False
    regressed_points: tuple[Regression, ...] = Field(default=(), description="each regression, size and band")


class GateOutcome(_Payload):
    """Every triggering sweep run's report and gate verdict."""

    runs: tuple[RunReport, ...] = ()


def _allow_in_xcom() -> None:
    """Let Airflow's serde rebuild these models from XCom (it refuses classes outside `airflow.*` otherwise)."""
    try:
        from airflow.sdk.serde import allow_class
    except ImportError:  # no Airflow (library use): nothing to register
        return
    for cls in (WorkItem, ServedGroup, StepOutcome, DownloadReport, RunOutcome, GateOutcome, RunVerdict):
        allow_class(cls)


_allow_in_xcom()
