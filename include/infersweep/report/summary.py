"""Run summaries ("53/55 green"), failure breakdowns and the cost/energy frontier, computed from report points."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from infersweep.report.data import ReportPoint


@dataclass(frozen=True)
class RunSummary:
    """How one run went: points green out of total, and failures by class."""

    dag_id: str
    run_id: str
    engine: str
    images: tuple[str, ...]
    started_at: datetime | None
    total: int
    green: int
    failures: dict[str, int] = field(default_factory=dict)
    evals_total: int = 0
    evals_passed: int = 0
    #: Work the run planned but does not execute yet: scenario type → jobs (e.g. {"agentic-coding": 12}).
    not_executed: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """`dag_id/run_id`."""
        return f"{self.dag_id}/{self.run_id}" if self.dag_id else self.run_id

    @property
    def ratio(self) -> str:
        """E.g. `53/55 green`."""
        return f"{self.green}/{self.total} green"

    @property
    def simulated(self) -> bool:
        """True when the run used the simulated engine."""
        return self.engine == "sim"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the plugin's `/api/summary`)."""
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "engine": self.engine,
            "images": list(self.images),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "total": self.total,
            "green": self.green,
            "summary": self.ratio,
            "failures": dict(self.failures),
            "evals_total": self.evals_total,
            "evals_passed": self.evals_passed,
        }


def summarize_runs(points: Iterable[ReportPoint]) -> list[RunSummary]:
    """One summary per (dag_id, run_id), newest first."""
    by_run: dict[tuple[str, str], list[ReportPoint]] = defaultdict(list)
    for p in points:
        by_run[(p.dag_id, p.run_id)].append(p)
    out = []
    for (dag_id, run_id), pts in by_run.items():
        failures = Counter((p.failure_kind or "unknown") for p in pts if p.status != "ok")
        engines = sorted({p.engine for p in pts})
        out.append(
            RunSummary(
                dag_id=dag_id,
                run_id=run_id,
                engine=",".join(engines),
                images=tuple(sorted({p.image for p in pts if p.image})),
                started_at=min((p.run_started_at for p in pts if p.run_started_at), default=None),
                total=len(pts),
                green=sum(p.status == "ok" for p in pts),
                failures=dict(failures.most_common()),
            )
        )
    # Newest first; runs without a start time (JSON imports) last. Timestamps avoid naive/aware clashes.
    out.sort(key=lambda s: (s.started_at.timestamp() if s.started_at else float("-inf"), s.label), reverse=True)
    return out


def failure_breakdown(points: Iterable[ReportPoint]) -> dict[str, int]:
    """Failed points per failure class, most frequent first."""
    return dict(Counter((p.failure_kind or "unknown") for p in points if p.status != "ok").most_common())


#: How $/Mtok is computed, said wherever it is shown (text, HTML, JSON).
COST_FORMULA = ("$/Mtok out = USD per GPU-hour / (output tok/s per GPU × 3600) × 1e6: the cost of the output "
                "tokens one GPU of the topology produces, so it compares across topologies of different sizes")


@dataclass(frozen=True)
class FrontierGroup:
    """The Pareto frontier (throughput/GPU vs interactivity) of one config key at one ISL/OSL: the union of
    its topologies' points, each frontier point with its cost and energy per token."""

    engine_kind: str
    config_key: str
    model: str
    isl: int
    osl: int
    points: tuple[ReportPoint, ...]

    @property
    def simulated(self) -> bool:
        """True for simulated-engine results."""
        return self.engine_kind == "sim"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: identity plus one record per frontier point (intervals included)."""
        return {
            "engine_kind": self.engine_kind, "config_key": self.config_key, "model": self.model,
            "isl": self.isl, "osl": self.osl, "simulated": self.simulated,
            "points": [frontier_record(p) for p in self.points],
        }


def frontier_record(p: ReportPoint) -> dict[str, Any]:
    """One frontier point for JSON output: identity, throughput, interactivity, $/Mtok, J/token, intervals."""
    return {
        "series": p.series_label, "topology": p.topology, "runner": p.runner, "conc": p.conc, "gpus": p.gpus,
        "tput_per_gpu": p.tput_per_gpu, "output_tput_per_gpu": p.output_tput_per_gpu,
        "median_intvty": p.median_intvty, "cost_per_gpu_hour": p.cost_per_gpu_hour,
        "cost_source": p.cost_source, "usd_per_mtok_output": p.usd_per_mtok_output,
        "joules_per_token": p.joules_per_token, "intervals": dict(p.intervals), "run": p.run_label,
        "image": p.image,
    }


def cost_frontiers(points: Sequence[ReportPoint]) -> list[FrontierGroup]:
    """One `FrontierGroup` per (engine kind, config key, model, ISL, OSL), real results first. Simulated and
    real points never share a frontier, as in the charts."""
    from infersweep.report.charts import INTERACTIVITY, frontier_points

    groups: dict[tuple[str, str, str, int, int], list[ReportPoint]] = defaultdict(list)
    for p in points:
        groups[(p.engine_kind, p.config_key, p.model, p.isl, p.osl)].append(p)
    out = []
    for (kind, key, model, isl, osl), pts in sorted(groups.items(), key=lambda kv: (kv[0][0] != "real", kv[0])):
        front = frontier_points(pts, INTERACTIVITY)
        if front:
            out.append(FrontierGroup(kind, key, model, isl, osl, tuple(front)))
    return out


def cost_sources(points: Iterable[ReportPoint]) -> dict[str, tuple[float, str]]:
    """Runner label → (USD per GPU-hour, where it came from) over the points that have a cost. A label whose
    points disagree (nodes priced differently) shows the highest value with its source."""
    out: dict[str, tuple[float, str]] = {}
    for p in points:
        if p.cost_per_gpu_hour is None:
            continue
        prev = out.get(p.runner)
        if prev is None or p.cost_per_gpu_hour > prev[0]:
            out[p.runner] = (p.cost_per_gpu_hour, p.cost_source or "inventory")
    return dict(sorted(out.items()))


def frontiers_json(points: Sequence[ReportPoint]) -> dict[str, Any]:
    """The report's JSON output: how $/Mtok is computed, each runner's cost and its source, and every
    config key's frontier per ISL/OSL (`infersweep report --json`)."""
    return {
        "usd_per_mtok_output": COST_FORMULA,
        "cost_per_gpu_hour": {runner: {"usd": usd, "source": src} for runner, (usd, src) in cost_sources(points).items()},
        "frontiers": [g.to_dict() for g in cost_frontiers(points)],
    }
