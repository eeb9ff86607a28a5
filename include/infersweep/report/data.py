"""The report's unit of data: one measured (or failed) benchmark point with its full identity.

A `ReportPoint` is what every chart, table, comparison and gate works on. It is deliberately flat and
backend-free: the DB adapter (`report.store_source`) and the JSON loader (`report.json_source`) both
produce it, so the pure code (frontier, noise, gate) is testable with hand-made points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from infersweep.plan.models import pools_label

#: Engines whose numbers are not measurements of real hardware. They are never mixed with real ones.
SIMULATED_ENGINES = frozenset({"sim"})

Status = Literal["ok", "failed"]

#: Where a point's cost per GPU-hour came from: the node's inventory entry (stored with the point's raw
#: JSON by the benchmark step), or `--cost-per-gpu-hour RUNNER=USD` given to the report.
COST_FROM_INVENTORY = "inventory"
COST_FROM_REPORT = "--cost-per-gpu-hour"


class ReportPoint(BaseModel):
    """One (isl, osl, conc) point of one serve group in one run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Provenance: where the number came from.
    dag_id: str = ""
    run_id: str = ""
    run_started_at: datetime | None = None
    measured_at: datetime | None = None
    image: str | None = None
    image_digest: str | None = None
    engine: str = Field(default="unknown", description="sim | vllm-docker | vllm-process | …")
    engine_version: str | None = None
    recipe_fingerprint: str | None = None
    # Configuration identity.
    config_key: str = ""
    model: str = ""
    model_prefix: str | None = None
    runner: str = ""
    framework: str = ""
    precision: str = ""
    spec_decoding: str | None = None
    tp: int = 1
    ep: int = 1
    dp_attn: bool = False
    pp: int = 1
    gpus: int | None = None
    #: Multinode: the worker pools ({role, num_worker, tp, ep, dp_attn, pp, …}); None for one server process.
    pools: list[dict[str, Any]] | None = None
    isl: int
    osl: int
    conc: int
    # Headline metrics (vLLM definitions, InferenceX per-GPU normalisation, interactivity = 1000/TPOT).
    tput_per_gpu: float | None = None
    output_tput_per_gpu: float | None = None
    median_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    median_tpot_ms: float | None = None
    p99_tpot_ms: float | None = None
    median_intvty: float | None = None
    median_e2el_ms: float | None = None
    p99_e2el_ms: float | None = None
    num_completed: int | None = None
    num_failed: int | None = None
    client_bound: bool = False
    # Cost and energy (issue 19): USD per GPU-hour of the point's runner label and where that came from, and
    # the telemetry's joules per output token (all GPUs of the server; None without valid telemetry).
    cost_per_gpu_hour: float | None = None
    cost_source: str | None = None
    joules_per_token: float | None = None
    # Confidence intervals per headline metric: {"tput_per_gpu": {"lo", "hi", "level", "method", "n"}}.
    intervals: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Outcome.
    status: Status = "ok"
    failure_kind: str | None = None
    error: str | None = None

    @property
    def simulated(self) -> bool:
        """True for results of the simulated engine (labelled, never charted with real results)."""
        return self.engine in SIMULATED_ENGINES

    @property
    def engine_kind(self) -> str:
        """`sim` or `real`: the partition charts and comparisons never cross."""
        return "sim" if self.simulated else "real"

    @property
    def ok(self) -> bool:
        """A successful point with the metrics a chart needs."""
        return self.status == "ok" and self.tput_per_gpu is not None

    @property
    def topology(self) -> str:
        """Compact parallelism label, e.g. `tp8`, `tp8-ep8-dpa`, `tp4-pp2`; a disaggregated server names its
        pools, e.g. `1p-tp8+2d-tp8-ep8-dpa` (workers x layout per pool)."""
        if self.pools:
            return pools_label(self.pools)
        parts = [f"tp{self.tp}"]
        if self.ep > 1:
            parts.append(f"ep{self.ep}")
        if self.pp > 1:
            parts.append(f"pp{self.pp}")
        if self.dp_attn:
            parts.append("dpa")
        return "-".join(parts)

    @property
    def spec_label(self) -> str:
        """Spec-decoding method, `none` when off (InferenceX's spelling)."""
        return self.spec_decoding or "none"

    @property
    def series_label(self) -> str:
        """One chart series per (runner, framework, precision, spec-decoding, topology)."""
        spec = "" if self.spec_label == "none" else f" {self.spec_label}"
        return f"{self.runner} {self.framework} {self.precision}{spec} {self.topology}"

    @property
    def chart_group(self) -> tuple[str, str, int, int]:
        """(engine kind, model, isl, osl): one pair of charts per group."""
        return (self.engine_kind, self.model, self.isl, self.osl)

    @property
    def config_identity(self) -> tuple[object, ...]:
        """What must match for two points to be "the same configuration" (image and run excluded)."""
        return (
            self.engine_kind, self.config_key, self.model, self.runner, self.framework, self.precision,
            self.spec_label, self.tp, self.ep, self.dp_attn, self.pp, self.topology if self.pools else None,
        )

    @property
    def point_key(self) -> tuple[object, ...]:
        """Pairing key for comparisons: config identity plus (isl, osl, conc)."""
        return (*self.config_identity, self.isl, self.osl, self.conc)

    @property
    def run_label(self) -> str:
        """`dag_id/run_id`, or just the run id when the DAG is unknown."""
        return f"{self.dag_id}/{self.run_id}" if self.dag_id else self.run_id

    @property
    def fingerprint_prefix(self) -> str:
        """First 12 characters of the recipe fingerprint (enough to find the recipe)."""
        return (self.recipe_fingerprint or "")[:12]

    @property
    def usd_per_mtok_output(self) -> float | None:
        """USD per million output tokens: the cost of one GPU-hour over the output tokens one GPU of this
        topology produces in an hour. Per GPU, so it compares across topologies with different GPU counts."""
        return usd_per_mtok(self.cost_per_gpu_hour, self.output_tput_per_gpu)

    def interval(self, metric: str) -> tuple[float, float] | None:
        """(lo, hi) of a metric's confidence interval, or None when the point has none."""
        iv = self.intervals.get(metric) if isinstance(self.intervals, dict) else None
        if not iv:
            return None
        return float(iv["lo"]), float(iv["hi"])

    @property
    def e2el_s(self) -> float | None:
        """Median end-to-end latency in seconds (the E2E chart's axis unit)."""
        return None if self.median_e2el_ms is None else self.median_e2el_ms / 1000.0


def point_label(point: ReportPoint) -> str:
    """Human-readable identity of a point for tables and messages."""
    return f"{point.config_key or point.model} {point.topology} isl={point.isl} osl={point.osl} conc={point.conc}"


def usd_per_mtok(cost_per_gpu_hour: float | None, output_tput_per_gpu: float | None) -> float | None:
    """`cost_per_gpu_hour / (output_tput_per_gpu * 3600) * 1e6`; None when either is missing or not positive."""
    if cost_per_gpu_hour is None or output_tput_per_gpu is None:
        return None
    if not (math.isfinite(cost_per_gpu_hour) and math.isfinite(output_tput_per_gpu)) or output_tput_per_gpu <= 0:
        return None
    return cost_per_gpu_hour / (output_tput_per_gpu * 3600.0) * 1e6


def _finite_number(value: Any) -> float | None:
    # bool is an int subclass; a stray `true` in hand-written JSON is not a number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def clean_intervals(value: Any) -> dict[str, dict[str, Any]]:
    """The intervals of a stored point, keeping only well-formed entries: metric → {lo, hi, level, method, n}
    with finite lo <= hi. Anything else (None, a list, an entry without bounds) is dropped, so charts and the
    gate never see half an interval."""
    if not isinstance(value, Mapping):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name, iv in value.items():
        if not isinstance(name, str) or not isinstance(iv, Mapping):
            continue
        lo, hi = _finite_number(iv.get("lo")), _finite_number(iv.get("hi"))
        if lo is None or hi is None or lo > hi:
            continue
        entry = dict(iv)
        entry["lo"], entry["hi"] = lo, hi
        out[name] = entry
    return out


def raw_cost_energy(raw: Any) -> tuple[float | None, float | None]:
    """(cost per GPU-hour, joules per output token) from a point's raw client JSON, where the benchmark
    step stores them: `raw["infersweep"]["cost_per_gpu_hour"]` and `raw["infersweep"]["energy"]`."""
    ext = raw.get("infersweep") if isinstance(raw, Mapping) else None
    if not isinstance(ext, Mapping):
        return None, None
    cost = _finite_number(ext.get("cost_per_gpu_hour"))
    energy = ext.get("energy")
    jpt = _finite_number(energy.get("joules_per_token")) if isinstance(energy, Mapping) else None
    return (cost if cost is not None and cost > 0 else None), jpt


def apply_costs(points: Iterable[ReportPoint], overrides: Mapping[str, float]) -> list[ReportPoint]:
    """Points with `overrides` (runner label → USD per GPU-hour) applied: an override replaces the inventory's
    value and is recorded as `cost_source = COST_FROM_REPORT`; points with a stored cost keep it and are marked
    `COST_FROM_INVENTORY`."""
    out = []
    for p in points:
        if p.runner in overrides:
            p = p.model_copy(update={"cost_per_gpu_hour": float(overrides[p.runner]), "cost_source": COST_FROM_REPORT})
        elif p.cost_per_gpu_hour is not None and p.cost_source is None:
            p = p.model_copy(update={"cost_source": COST_FROM_INVENTORY})
        out.append(p)
    return out


def parse_cost_option(values: Iterable[str]) -> dict[str, float]:
    """`RUNNER=USD` strings (the CLI's `--cost-per-gpu-hour`) as a dict; raises ValueError naming the bad one."""
    out: dict[str, float] = {}
    for text in values:
        runner, sep, usd = text.partition("=")
        runner, usd = runner.strip(), usd.strip()
        try:
            cost = float(usd) if sep and runner else math.nan
        except ValueError:
            cost = math.nan
        if not math.isfinite(cost) or cost <= 0:
            raise ValueError(f"--cost-per-gpu-hour {text!r}: expected RUNNER=USD with a positive number of US "
                             "dollars per GPU-hour, e.g. h200=3.50")
        out[runner] = cost
    return out

