"""Run summaries ("53/55 green") and failure breakdowns, computed from report points."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
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
