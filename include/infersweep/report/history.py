"""Sweep history: how one config key's frontier moved across runs, night after night, image after image.

`build_history` is pure: from loaded points (and the runs' dates) it builds a typed `History`. Per serve
topology (one series: runner, framework, precision, spec decoding, topology, model, ISL/OSL) and per run:

- the Pareto frontier (throughput/GPU vs interactivity, the report's main chart);
- throughput/GPU read off that frontier at fixed interactivity levels (linear between the two frontier
  vertices that bracket the level; no extrapolation, so a level outside what the run reached is empty);
- a verdict per level against the nearest earlier run that reached the level, with the gate's noise model
  (`report.noise.noise_band`: the level's values in the up-to-20 runs before the pair give a MAD sigma,
  else the floor) and the gate's decision rule (`report.gate.decide`).

Runs are ordered by their logical date (Airflow's `logical_date`, recorded in the store's runs table),
falling back to when they started, so a backfilled run sits at the night it measures, not the day it ran.

`history_runs` / `load_history_input` read the store; they are the only functions here that do I/O.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from infersweep.report.charts import INTERACTIVITY, frontier_points
from infersweep.report.data import ReportPoint
from infersweep.report.gate import FAILING, decide
from infersweep.report.noise import DEFAULT_FLOOR, DEFAULT_K, Source, noise_band
from infersweep.report.text import format_table

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from infersweep.report.store_source import RunRef

LevelVerdict = Literal["first", "ok", "regression", "improvement", "failed", "no-data"]

#: Earlier runs whose values feed a level's noise band (the gate's `per_point` history window).
HISTORY_WINDOW = 20
#: Where, across the interactivity range most runs' frontiers cover, the default levels sit.
LEVEL_POSITIONS = (0.2, 0.5, 0.8)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class HistoryRun(_Model):
    """One run's identity and when it measured (its logical date), as the history orders it."""

    dag_id: str
    run_id: str
    image: str | None = None
    logical_date: datetime | None = None
    started_at: datetime | None = None
    trigger_kind: str | None = None

    @property
    def label(self) -> str:
        """`dag_id/run_id`."""
        return f"{self.dag_id}/{self.run_id}" if self.dag_id else self.run_id

    @property
    def date(self) -> datetime | None:
        """The logical date (what night the run measures), else when it started."""
        return _utc(self.logical_date) or _utc(self.started_at)

    @property
    def backfilled(self) -> bool:
        """True for an Airflow backfill run."""
        return self.trigger_kind == "backfill"

    def order_key(self) -> tuple[object, ...]:
        """Sort key: logical date, then start time, then identity (runs without a date last)."""
        far = datetime.max.replace(tzinfo=UTC)
        return (self.date or far, _utc(self.started_at) or far, self.dag_id, self.run_id)


class FrontierVertex(_Model):
    """One point on a run's Pareto frontier."""

    conc: int
    intvty: float
    tput_per_gpu: float
    e2el_s: float | None = None
    client_bound: bool = False


class LevelValue(_Model):
    """Throughput/GPU at one interactivity level in one run, and its verdict against the baseline run."""

    level: float = Field(description="interactivity, tok/s/user")
    tput_per_gpu: float | None = Field(None, description="read off the frontier; None when not reached")
    baseline_run: str | None = Field(None, description="the nearest earlier run that reached the level")
    baseline_date: datetime | None = None
    baseline: float | None = None
    rel: float | None = Field(None, description="(value - baseline) / baseline")
    band: float | None = Field(None, description="noise band, relative (0.05 = ±5 %)")
    band_source: Source | None = None
    band_n: int = 0
    verdict: LevelVerdict = "no-data"

    def describe_band(self) -> str:
        """E.g. `±5.0% (floor, n=0)` (the gate's wording), empty without a band."""
        if self.band is None:
            return ""
        return f"±{self.band * 100:.1f}% ({self.band_source}, n={self.band_n})"


class RunHistory(_Model):
    """One run of one topology: its frontier, the level values and whether it regressed."""

    run: HistoryRun
    image: str | None = None
    points_ok: int = 0
    points_total: int = 0
    failures: dict[str, int] = Field(default_factory=dict)
    frontier: list[FrontierVertex] = Field(default_factory=list)
    levels: list[LevelValue] = Field(default_factory=list)
    regressed: bool = False

    @property
    def peak_tput_per_gpu(self) -> float | None:
        """The frontier's highest throughput/GPU."""
        return max((v.tput_per_gpu for v in self.frontier), default=None)


class TopologyHistory(_Model):
    """Every run of one serve topology (one report series) of the config key."""

    engine_kind: Literal["real", "sim"]
    model: str
    isl: int
    osl: int
    runner: str
    framework: str
    precision: str
    spec_decoding: str
    topology: str
    series: str
    levels: list[float]
    runs: list[RunHistory]

    @property
    def simulated(self) -> bool:
        """Results of the simulated engine (labelled; never mixed with real ones)."""
        return self.engine_kind == "sim"

    @property
    def label(self) -> str:
        """E.g. `h200 vllm fp8 tp8 · ISL 1024 / OSL 1024`."""
        return f"{self.series} · ISL {self.isl} / OSL {self.osl}"


class Regression(_Model):
    """One level of one run that got worse beyond its noise band (or whose points all failed)."""

    topology: str
    run: str
    image: str | None
    date: datetime | None
    level: float
    value: LevelValue


class History(_Model):
    """A config key's runs in time order and, per topology, how its frontier moved."""

    config_key: str
    since: datetime | None = None
    floor: float = DEFAULT_FLOOR
    k: float = DEFAULT_K
    runs: list[HistoryRun]
    topologies: list[TopologyHistory]

    def regressions(self) -> list[Regression]:
        """Every regressed level, in topology then time order."""
        return [
            Regression(topology=t.label, run=r.run.label, image=r.image, date=r.run.date, level=lv.level, value=lv)
            for t in self.topologies for r in t.runs for lv in r.levels if lv.verdict in FAILING
        ]


def parse_since(text: str) -> datetime:
    """`YYYY-MM-DD` or an ISO 8601 timestamp as a UTC datetime (no zone = UTC); ValueError names the format."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--since {text!r} is not a date: use YYYY-MM-DD or an ISO 8601 timestamp") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def tput_at_interactivity(frontier: Sequence[FrontierVertex], level: float) -> float | None:
    """Throughput/GPU of a frontier at an interactivity level: linear between the two vertices that bracket
    it, None outside the frontier's range (a level the run never reached is not extrapolated)."""
    pts = sorted(frontier, key=lambda v: v.intvty)
    if not pts or not math.isfinite(level) or level < pts[0].intvty or level > pts[-1].intvty:
        return None
    if len(pts) == 1:
        return pts[0].tput_per_gpu
    for a, b in pairwise(pts):
        if a.intvty <= level <= b.intvty:
            if b.intvty == a.intvty:
                return max(a.tput_per_gpu, b.tput_per_gpu)
            t = (level - a.intvty) / (b.intvty - a.intvty)
            return a.tput_per_gpu + t * (b.tput_per_gpu - a.tput_per_gpu)
    return None  # unreachable: the range check above guarantees a bracket


def _nice(value: float) -> float:
    # Two significant digits: "tput/GPU @ 45 tok/s/user" reads better than @ 44.73.
    return float(f"{value:.2g}")


def choose_levels(frontiers: Iterable[Sequence[FrontierVertex]], positions: Sequence[float] = LEVEL_POSITIONS,
                  ) -> list[float]:
    """Interactivity levels most runs' frontiers reach: at `positions` across [median low end, median high
    end] of the runs' frontier ranges, rounded to two significant digits."""
    ranges = [(min(v.intvty for v in f), max(v.intvty for v in f)) for f in frontiers if f]
    if not ranges:
        return []
    lo = statistics.median(r[0] for r in ranges)
    hi = statistics.median(r[1] for r in ranges)
    if hi <= lo:  # the runs barely overlap: use the union instead
        lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
    if hi <= lo:
        return [_nice(lo)]
    return sorted({_nice(lo + (hi - lo) * f) for f in positions})


def _frontier(points: Sequence[ReportPoint]) -> list[FrontierVertex]:
    return [
        FrontierVertex(conc=p.conc, intvty=float(p.median_intvty), tput_per_gpu=float(p.tput_per_gpu),
                       e2el_s=p.e2el_s, client_bound=p.client_bound)
        for p in frontier_points(points, INTERACTIVITY)
        if p.median_intvty is not None and p.tput_per_gpu is not None
    ]


def _judge(values: Sequence[float | None], ok_points: Sequence[int], i: int, level: float,
           runs: Sequence[HistoryRun], *, floor: float, k: float, window: int) -> LevelValue:
    """Verdict of run `i` at one level against the nearest earlier run that reached it."""
    value = values[i]
    j = next((j for j in range(i - 1, -1, -1) if values[j] is not None), None)
    if j is None:
        return LevelValue(level=level, tput_per_gpu=value, verdict="first" if value is not None else "no-data")
    baseline = values[j]
    assert baseline is not None
    # As in the gate, the compared runs are left out of their own noise estimate.
    band = noise_band(history=[v for v in values[max(0, j - window):j] if v is not None], floor=floor, k=k)
    common = {"level": level, "tput_per_gpu": value, "baseline_run": runs[j].label,
              "baseline_date": runs[j].date, "baseline": baseline,
              "band": band.rel, "band_source": band.source, "band_n": band.n}
    if value is None:
        # Measured, but nothing green: the gate's "failed" (a crash is the largest drop).
        return LevelValue(**common, verdict="failed" if ok_points[i] == 0 else "no-data")
    verdict = decide(baseline, value, higher_is_better=True, band=band.rel)
    return LevelValue(**common, rel=(value - baseline) / abs(baseline) if baseline else None,
                      verdict="ok" if verdict == "no-data" else verdict)


def _series_key(p: ReportPoint) -> tuple[object, ...]:
    return (p.engine_kind, p.model, p.isl, p.osl, p.runner, p.framework, p.precision, p.spec_label,
            p.tp, p.ep, p.pp, p.dp_attn)


def _majority_image(points: Sequence[ReportPoint]) -> str | None:
    images = [p.image for p in points if p.image]
    return max(set(images), key=lambda i: (images.count(i), i)) if images else None


def build_history(
    points: Iterable[ReportPoint],
    *,
    config_key: str,
    runs: Iterable[HistoryRun] = (),
    levels: Sequence[float] | None = None,
    since: datetime | date | None = None,
    floor: float = DEFAULT_FLOOR,
    k: float = DEFAULT_K,
    window: int = HISTORY_WINDOW,
) -> History:
    """The history of `config_key` from its points (any runs, failures included).

    `runs` gives each run's logical date, trigger kind and image (from the store); a run that only appears
    in `points` is dated by its start. `levels` are interactivity levels (tok/s/user) for every topology;
    by default each topology gets levels its runs' frontiers reach (`choose_levels`). `since` shows only runs
    dated on or after it; earlier runs among `runs`/`points` still serve as the first shown run's baseline and
    as noise history, so a window does not change a run's verdict. `floor` and `k` are the gate's noise-band
    parameters.
    """
    if isinstance(since, date) and not isinstance(since, datetime):
        since = datetime(since.year, since.month, since.day, tzinfo=UTC)
    since = _utc(since)
    pts = [p for p in points if p.config_key == config_key]
    by_run: dict[tuple[str, str], HistoryRun] = {(r.dag_id, r.run_id): r for r in runs}
    for p in pts:
        by_run.setdefault((p.dag_id, p.run_id), HistoryRun(dag_id=p.dag_id, run_id=p.run_id, image=p.image,
                                                            started_at=p.run_started_at))
    ordered = sorted((r for r in by_run.values() if r.date is not None or since is None), key=HistoryRun.order_key)
    shown = [since is None or (r.date is not None and r.date >= since) for r in ordered]
    position = {(r.dag_id, r.run_id): i for i, r in enumerate(ordered)}
    series: dict[tuple[object, ...], dict[int, list[ReportPoint]]] = defaultdict(lambda: defaultdict(list))
    for p in pts:
        idx = position.get((p.dag_id, p.run_id))
        if idx is not None:
            series[_series_key(p)][idx].append(p)

    topologies = []
    for key in sorted(series, key=lambda s: (s[0] != "real", *s[1:])):  # real first, then model, ISL/OSL
        per_run = series[key]
        indices = sorted(per_run)
        if not any(shown[i] for i in indices):
            continue
        frontiers = {i: _frontier(per_run[i]) for i in indices}
        lv = sorted({float(x) for x in levels}) if levels else choose_levels(f for i, f in frontiers.items() if shown[i])
        series_runs = [ordered[i] for i in indices]
        ok_counts = [sum(p.ok for p in per_run[i]) for i in indices]
        values = {level: [tput_at_interactivity(frontiers[i], level) for i in indices] for level in lv}
        entries = []
        for n, i in enumerate(indices):
            if not shown[i]:
                continue
            pts_i = per_run[i]
            level_values = [_judge(values[level], ok_counts, n, level, series_runs, floor=floor, k=k, window=window)
                            for level in lv]
            failures: dict[str, int] = {}
            for p in pts_i:
                if p.status != "ok":
                    failures[p.failure_kind or "unknown"] = failures.get(p.failure_kind or "unknown", 0) + 1
            entries.append(RunHistory(
                run=ordered[i], image=_majority_image(pts_i) or ordered[i].image, points_ok=ok_counts[n],
                points_total=len(pts_i), failures=failures, frontier=frontiers[i], levels=level_values,
                regressed=any(v.verdict in FAILING for v in level_values),
            ))
        sample = per_run[indices[-1]][0]
        topologies.append(TopologyHistory(
            engine_kind="sim" if sample.simulated else "real", model=sample.model, isl=sample.isl, osl=sample.osl,
            runner=sample.runner, framework=sample.framework, precision=sample.precision,
            spec_decoding=sample.spec_label, topology=sample.topology, series=sample.series_label, levels=lv,
            runs=entries,
        ))
    return History(config_key=config_key, since=since, floor=floor, k=k,
                   runs=[r for r, show in zip(ordered, shown, strict=True) if show], topologies=topologies)


# --- text ---------------------------------------------------------------------------------------------------


def _day(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "?"


def _cell(v: LevelValue) -> str:
    if v.tput_per_gpu is None:
        return "FAILED" if v.verdict == "failed" else "-"
    text = f"{v.tput_per_gpu:.1f}"
    if v.rel is not None:
        mark = "!" if v.verdict == "regression" else ""
        text += f" ({v.rel * 100:+.1f}%{mark} ±{(v.band or 0) * 100:.0f}%)"
    return text


def _run_verdict(r: RunHistory) -> str:
    verdicts = {v.verdict for v in r.levels}
    if r.regressed:
        return "REGRESSION"
    if "improvement" in verdicts:
        return "improvement"
    if verdicts <= {"first", "no-data"}:
        return "first" if "first" in verdicts else "-"
    return "ok"


def history_text(history: History) -> str:
    """Per topology a table: run date, image, run, points green, tput/GPU at each level with its change and
    noise band (`!` beyond the band), the frontier's peak and the verdict; then the regressions."""
    blocks = [
        f"History of {history.config_key}: {len(history.runs)} runs"
        + (f" since {history.since:%Y-%m-%d}" if history.since else "")
        + f", ordered by logical date. Band = max({history.floor * 100:.0f}%, {history.k:g} × sigma) "
        "(the gate's noise model); ! = beyond the band."
    ]
    for t in history.topologies:
        header = ["date", "image", "run", "points", *(f"tput/GPU @{lv:g} tok/s/user" for lv in t.levels),
                  "peak tput/GPU", "verdict"]
        rows = [
            [_day(r.run.date) + (" (backfill)" if r.run.backfilled else ""), r.image or "?", r.run.run_id,
             f"{r.points_ok}/{r.points_total}", *(_cell(v) for v in r.levels),
             "-" if r.peak_tput_per_gpu is None else f"{r.peak_tput_per_gpu:.1f}", _run_verdict(r)]
            for r in t.runs
        ]
        sim = " [SIMULATED]" if t.simulated else ""
        blocks.append(f"{t.label} · {t.model}{sim}\n" + format_table(header, rows))
    lines = regression_lines(history)
    n = len(history.regressions())
    blocks.append(f"Regressions ({n} level{'s' if n != 1 else ''}):\n" + "\n".join(f"  {line}" for line in lines)
                  if lines else "No regressions.")
    return "\n\n".join(blocks)


def regression_lines(history: History) -> list[str]:
    """One line per regressed run of a topology: when, which image, against which run, and per level the
    change beyond its band (or that every point failed)."""
    groups: dict[tuple[str, str], list[Regression]] = {}
    for reg in history.regressions():
        groups.setdefault((reg.topology, reg.run), []).append(reg)
    lines = []
    for regs in groups.values():
        first = regs[0]
        one_baseline = len({r.value.baseline_run for r in regs}) == 1
        parts = [
            f"@{r.level:g} "
            + ("all points failed" if r.value.verdict == "failed" else
               f"{(r.value.rel or 0) * 100:+.1f}% beyond {r.value.describe_band()}")
            + ("" if one_baseline else f" vs {_day(r.value.baseline_date)}")
            for r in regs
        ]
        vs = f" vs {_day(first.value.baseline_date)}" if one_baseline else ""
        lines.append(f"{first.topology}: {_day(first.date)} {first.image or '?'}{vs}: " + "; ".join(parts))
    return lines


# --- store --------------------------------------------------------------------------------------------------


def history_runs(engine: Engine, config_key: str, *, since: datetime | None = None, lead: int = HISTORY_WINDOW + 1,
                 ) -> list[tuple[RunRef, HistoryRun]]:
    """The runs with results for `config_key` in history order: those dated on or after `since`, plus the
    `lead` newest before it (the first shown run's baseline and its noise window)."""
    from sqlalchemy import func, select

    from infersweep.report.store_source import RunRef
    from infersweep.store.models import BenchmarkResult, Run

    has_results = (select(BenchmarkResult.id)
                   .where(BenchmarkResult.run_pk == Run.id, BenchmarkResult.config_key == config_key).exists())
    query = select(Run.id, Run.dag_id, Run.run_id, Run.image_tag, Run.logical_date, Run.trigger_kind,
                   func.coalesce(Run.started_at, Run.created_at).label("started")).where(has_results)
    since = _utc(since)
    with engine.connect() as conn:
        pairs = sorted(
            ((RunRef(r.id, r.dag_id, r.run_id),
              HistoryRun(dag_id=r.dag_id, run_id=r.run_id, image=r.image_tag, logical_date=r.logical_date,
                         started_at=r.started, trigger_kind=r.trigger_kind)) for r in conn.execute(query)),
            key=lambda pair: pair[1].order_key(),
        )
    if since is None:
        return pairs
    first = next((n for n, (_, run) in enumerate(pairs) if run.date is not None and run.date >= since), len(pairs))
    if first == len(pairs):
        return []
    return pairs[max(0, first - lead):]


def config_keys(engine: Engine) -> list[tuple[str, int, datetime | None]]:
    """(config key, runs with results, newest run date) of every config key in the store."""
    from sqlalchemy import func, select

    from infersweep.store.models import BenchmarkResult, Run

    query = (select(BenchmarkResult.config_key, func.count(func.distinct(Run.id)),
                    func.max(func.coalesce(Run.logical_date, Run.started_at, Run.created_at)))
             .join(Run, Run.id == BenchmarkResult.run_pk).where(BenchmarkResult.config_key.is_not(None))
             .group_by(BenchmarkResult.config_key).order_by(BenchmarkResult.config_key))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    out = []
    for key, n, newest in rows:
        # SQLite returns an aggregate over a timestamp column as text.
        when = datetime.fromisoformat(newest) if isinstance(newest, str) else newest
        out.append((str(key), int(n), _utc(when)))
    return out


def load_history_input(engine: Engine, config_key: str, *, since: datetime | None = None,
                       ) -> tuple[list[ReportPoint], list[HistoryRun]]:
    """The config key's points (failures included) and runs from the store, for `build_history`."""
    from infersweep.report.store_source import load_run_refs

    pairs = history_runs(engine, config_key, since=since)
    points = [p for p in load_run_refs(engine, [ref for ref, _ in pairs]) if p.config_key == config_key]
    return points, [run for _, run in pairs]
