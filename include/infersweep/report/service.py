"""High-level report operations shared by the CLI, the report DAG and the Airflow plugin.

Reading (store or files) → points → HTML / comparison / gate. Every output file is written atomically
(temporary file + rename), so a crashed report never leaves a half-written page behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infersweep.fsnames import safe_filename
from infersweep.report.compare import Comparison, compare
from infersweep.report.data import ReportPoint, apply_costs
from infersweep.report.gate import EXIT_REGRESSION, GateResult, group_history, run_gate
from infersweep.report.html import INLINE, render_compare, render_report
from infersweep.report.metrics import DEFAULT_GATE_METRICS
from infersweep.report.noise import DEFAULT_FLOOR, DEFAULT_K
from infersweep.report.summary import RunSummary, summarize_runs


def write_atomic(path: Path, text: str) -> Path:
    """Write `text` to `path` via a temporary file in the same directory and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the page is meant to be served and shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def safe_name(text: str) -> str:
    """A run id or DAG id as a report path component: `safe_filename` with the report's settings (ASCII,
    runs squeezed, never empty, no length cap), shared by every writer and reader of report paths."""
    return safe_filename(text, max_len=None, ascii_only=True, squeeze=True, fallback="report")


def load_points(
    *, db_url: str | None = None, runs: Sequence[str] = (), results_dir: Path | None = None,
    dag_ids: Sequence[str] = (),
) -> tuple[list[ReportPoint], str]:
    """The points a report covers and a one-line description of where they came from."""
    points, source, _ = load_selection(db_url=db_url, runs=runs, results_dir=results_dir, dag_ids=dag_ids)
    return points, source


def load_selection(
    *, db_url: str | None = None, runs: Sequence[str] = (), results_dir: Path | None = None,
    dag_ids: Sequence[str] = (),
) -> tuple[list[ReportPoint], str, list[RunSummary] | None]:
    """Points, a description of their source, and the store's run summaries (None for files).

    `results_dir` reads result files (no DB). Otherwise the store: the named runs, or by default the
    newest run of each DAG (optionally only `dag_ids`). Summaries come from the store's views, so a run
    whose servers never booted still shows as "0/N green" even though it has no result rows.
    """
    if results_dir is not None:
        from infersweep.report.json_source import load_dir

        return load_dir(Path(results_dir)), f"Result files under {results_dir}.", None
    from infersweep.report.store_source import latest_runs, load_run_refs, resolve_runs, run_summaries
    from infersweep.store.db import get_engine, mask_url, resolve_url
    from infersweep.store.readonly import display_url

    engine = get_engine(db_url)
    where = display_url(mask_url(resolve_url(db_url)))
    if runs:
        refs = resolve_runs(engine, runs)
        source = f"Runs {', '.join(runs)} from {where}."
    else:
        refs = latest_runs(engine, dag_ids)
        scope = f" of {', '.join(dag_ids)}" if dag_ids else ""
        source = f"Newest run of each sweep DAG{scope} from {where}."
    summaries = run_summaries(engine, runs={(r.dag_id, r.run_id) for r in refs})
    return load_run_refs(engine, refs), source, summaries


@dataclass
class ReportOutcome:
    """What `build_report` wrote."""

    path: Path
    points: list[ReportPoint]
    summaries: list[RunSummary] = field(default_factory=list)

    @property
    def green(self) -> int:
        """Successful points."""
        return sum(p.status == "ok" for p in self.points)


def build_report(
    out: Path, *, db_url: str | None = None, runs: Sequence[str] = (), results_dir: Path | None = None,
    dag_ids: Sequence[str] = (), title: str = "infersweep report", plotly_js: str = INLINE,
    costs: Mapping[str, float] | None = None,
) -> ReportOutcome:
    """Load points and write the HTML report to `out`. `costs` (runner label → USD per GPU-hour) override or
    add to the inventory's costs stored with the points (`--cost-per-gpu-hour`)."""
    points, source, summaries = load_selection(db_url=db_url, runs=runs, results_dir=results_dir, dag_ids=dag_ids)
    points = apply_costs(points, costs or {})
    if summaries is None:
        summaries = summarize_runs(points)
    html = render_report(points, title=title, subtitle=source, plotly_js=plotly_js, summaries=summaries)
    return ReportOutcome(path=write_atomic(out, html), points=points, summaries=summaries)


def _is_path(selector: str, allow_files: bool) -> bool:
    return allow_files and Path(selector).exists()


def _load_side(selector: str, db_url: str | None, *, allow_files: bool = True) -> list[ReportPoint]:
    """A compare side: a result file or folder when the selector is an existing path, else the store."""
    path = Path(selector)
    if _is_path(selector, allow_files):
        from infersweep.report.json_source import load_dir, load_file

        return load_dir(path) if path.is_dir() else load_file(path)
    from infersweep.report.store_source import load_selector
    from infersweep.store.db import get_engine

    return load_selector(get_engine(db_url), selector)


def compare_and_gate(
    base: str, head: str, *, db_url: str | None = None, floor: float = DEFAULT_FLOOR, k: float = DEFAULT_K,
    metrics: Sequence[str] = DEFAULT_GATE_METRICS, use_history: bool = True, allow_files: bool = True,
) -> tuple[Comparison, GateResult]:
    """Pair the base and head selectors' points and judge them; history comes from the store.

    `allow_files=False` (the web app) never treats a selector as a local path.
    """
    base_points = _load_side(base, db_url, allow_files=allow_files)
    head_points = _load_side(head, db_url, allow_files=allow_files)
    comparison = compare(base_points, head_points, base_label=base, head_label=head)
    history: dict[tuple[object, ...], list[ReportPoint]] = {}
    if use_history and not (_is_path(base, allow_files) and _is_path(head, allow_files)):
        from infersweep.report.store_source import load_history
        from infersweep.store.db import get_engine

        exclude = {(p.dag_id, p.run_id) for p in (*base_points, *head_points)}
        history = group_history(load_history(get_engine(db_url), head_points, exclude=exclude))
    result = run_gate(comparison, metrics=metrics, history=history, floor=floor, k=k)
    return comparison, result


def write_compare(out: Path, comparison: Comparison, result: GateResult, *, plotly_js: str = INLINE) -> Path:
    """Write the compare page (frontier overlay + deltas table)."""
    return write_atomic(out, render_compare(comparison, result, plotly_js=plotly_js))


def report_and_gate_run(
    dag_id: str, run_id: str, *, out_dir: Path, db_url: str | None = None, floor: float = DEFAULT_FLOOR,
) -> dict[str, Any]:
    """The nightly report DAG's step for one sweep run.

    Writes `<out_dir>/<dag_id>/<run_id>.html` (the run's report) and, when an earlier run of the same
    DAG used a different image, `<…>.compare.html` plus the gate verdict against that previous image.
    Returns a JSON-friendly dict; `regressed` is True when the gate found regressions.
    """
    from infersweep.report.store_source import previous_image_run
    from infersweep.store.db import get_engine

    selector = f"{dag_id}/{run_id}"
    stem = Path(out_dir) / safe_name(dag_id) / safe_name(run_id)
    outcome = build_report(stem.parent / f"{stem.name}.html", db_url=db_url, runs=[selector], title=f"infersweep: {selector}")
    result: dict[str, Any] = {
        "dag_id": dag_id, "run_id": run_id, "report": str(outcome.path),
        "summary": outcome.summaries[0].to_dict() if outcome.summaries else None,
        "baseline": None, "compare": None, "gate": None, "regressed": False,
    }
    previous = previous_image_run(get_engine(db_url), dag_id, run_id)
    if previous is None:
        return result
    comparison, gate = compare_and_gate(previous.label, selector, db_url=db_url, floor=floor)
    page = write_compare(stem.parent / f"{stem.name}.compare.html", comparison, gate)
    # `regressed` is the decision; `gate.exit_code` 2 only means "nothing comparable" (e.g. a changed
    # config) and is not a regression.
    result.update(baseline=previous.label, compare=str(page), gate=gate.to_dict(),
                  regressed=gate.exit_code == EXIT_REGRESSION)
    return result
