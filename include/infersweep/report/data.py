"""The report's unit of data: one measured (or failed) benchmark point with its full identity.

A `ReportPoint` is what every chart, table, comparison and gate works on. It is deliberately flat and
backend-free: the DB adapter (`report.store_source`) and the JSON loader (`report.json_source`) both
produce it, so the pure code (frontier, noise, gate) is testable with hand-made points.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Engines whose numbers are not measurements of real hardware. They are never mixed with real ones.
SIMULATED_ENGINES = frozenset({"sim"})

Status = Literal["ok", "failed"]


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
        """Compact parallelism label, e.g. `tp8`, `tp8-ep8-dpa`, `tp4-pp2`."""
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
            self.spec_label, self.tp, self.ep, self.dp_attn, self.pp,
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
    def e2el_s(self) -> float | None:
        """Median end-to-end latency in seconds (the E2E chart's axis unit)."""
        return None if self.median_e2el_ms is None else self.median_e2el_ms / 1000.0


def point_label(point: ReportPoint) -> str:
    """Human-readable identity of a point for tables and messages."""
    return f"{point.config_key or point.model} {point.topology} isl={point.isl} osl={point.osl} conc={point.conc}"
