"""A point's GPU telemetry as the `gpu_metrics.csv` that InferenceX's `utils/aggregate_power.py` reads.

The header follows nvidia-smi's `--query-gpu=timestamp,index,power.draw,… --format=csv` (what InferenceX's
`start_gpu_monitor` records). aggregate_power.py finds its columns by name: the first one containing "time",
the first containing "power" but not limit/cap/max/min, and one named exactly `index`. Timestamps are unix
seconds written as plain numbers with 6 decimals, which it reads as epoch seconds; nvidia-smi's own
"YYYY/MM/DD HH:MM:SS.fff" would be read as local time at millisecond resolution. An unreadable value is
written `[N/A]`, as nvidia-smi does, so aggregate_power.py reports it (`invalid_power_sample`) instead of
integrating 0 W; a read that named no GPU at all has an empty `index`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infersweep.telemetry.gpu import (
    ALL_GPUS,
    MAX_SAMPLE_GAP_S,
    EnergyWindow,
    GpuSample,
    TelemetrySampler,
    energy_window,
)

#: (CSV column, GpuSample attribute); the first three are the ones aggregate_power.py needs.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("timestamp", "t"),
    ("index", "gpu"),
    ("power.draw [W]", "power_w"),
    ("temperature.gpu", "temperature_c"),
    ("clocks.current.sm [MHz]", "sm_clock_mhz"),
    ("clocks.current.memory [MHz]", "mem_clock_mhz"),
    ("utilization.gpu [%]", "utilization_pct"),
    ("memory.used [MiB]", "memory_used_mib"),
    ("source", "source"),
    ("simulated", "simulated"),
)
#: Readings kept on each side of a point's window: more than aggregate_power.py's 3 s look-around, so the
#: file shows the idle power either side too.
WINDOW_PAD_S = 10.0
NOT_AVAILABLE = "[N/A]"


def _cell(value: Any) -> str:
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if not math.isfinite(value):
            return NOT_AVAILABLE
        # fixed notation: aggregate_power.py takes the first number in a cell, so "1e-05" would read as 1
        return f"{value:.6f}".rstrip("0").rstrip(".")
    return str(value)


def window_samples(samples: Iterable[GpuSample], start_unix: float, end_unix: float, *,
                   pad_s: float = WINDOW_PAD_S) -> list[GpuSample]:
    """The readings from `pad_s` before the window to `pad_s` after it, in time then GPU order."""
    lo, hi = start_unix - pad_s, end_unix + pad_s
    return sorted((s for s in samples if lo <= s.t <= hi), key=lambda s: (s.t, s.gpu))


def gpu_metrics_csv(samples: Iterable[GpuSample]) -> str:
    """The CSV text: a header, then one row per GPU per read, in the order given."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([name for name, _ in COLUMNS])
    for s in samples:
        row = []
        for name, attr in COLUMNS:
            if name == "timestamp":
                row.append(f"{s.t:.6f}")
            elif name == "index":
                row.append("" if s.gpu == ALL_GPUS else str(s.gpu))
            else:
                row.append(_cell(getattr(s, attr)))
        writer.writerow(row)
    return buf.getvalue()


def write_gpu_metrics_csv(path: Path, text: str) -> Path:
    """Write the CSV text atomically (a reader never sees half a file); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def gpu_metrics_path(result_file: Path) -> Path:
    """Where a point's CSV goes beside its result JSON: `<stem>_gpu_metrics.csv`."""
    return result_file.with_name(f"{result_file.stem}_gpu_metrics.csv")


@dataclass(frozen=True)
class PointTelemetry:
    """One benchmark point's energy (InferenceX's integration) and its readings as `gpu_metrics.csv` text."""

    energy: EnergyWindow
    csv_text: str


def _unix(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def point_telemetry(samples: Iterable[GpuSample], result: Mapping[str, Any], *, expected_gpus: int | None,
                    max_gap_s: float = MAX_SAMPLE_GAP_S) -> PointTelemetry:
    """Energy per output token over a client result's measured window, and the CSV for that window.

    The window is the result's `benchmark_start_time_unix` .. `benchmark_end_time_unix` (wall clock, as the
    samples); a result without them gets energy None with reason `invalid_benchmark_window`.
    """
    samples = list(samples)
    start = _unix(result.get("benchmark_start_time_unix"))
    end = _unix(result.get("benchmark_end_time_unix"))
    energy = energy_window(samples, start, end, int(result.get("total_output_tokens") or 0),
                           expected_gpus=expected_gpus, max_gap_s=max_gap_s)
    kept = window_samples(samples, start, end) if math.isfinite(start) and math.isfinite(end) else samples
    return PointTelemetry(energy=energy, csv_text=gpu_metrics_csv(kept))


def measure_point(sampler: TelemetrySampler, result: Mapping[str, Any], *,
                  expected_gpus: int | None) -> PointTelemetry:
    """`point_telemetry` over a running sampler's series, once a reading at or after the window's end exists.

    The integration needs readings on both sides of the window, so this waits for the sampler's next tick
    (at most two intervals + 10 s; past that the energy says the window is not bracketed)."""
    end = _unix(result.get("benchmark_end_time_unix"))
    if math.isfinite(end):
        sampler.wait_for_sample_after(end, timeout_s=2 * sampler.interval_s + 10.0)
    return point_telemetry(sampler.samples, result, expected_gpus=expected_gpus)


def point_energy(sampler: TelemetrySampler, result: Mapping[str, Any], *, expected_gpus: int | None,
                 time_scale: float = 1.0) -> dict[str, Any]:
    """A point's energy as stored with its raw JSON (`infersweep.energy`): InferenceX's integration, with
    the window's readings as `gpu_metrics_csv`; nulls with a reason if unreadable.

    `time_scale` > 1 is the simulator's: its modelled watts are real but its seconds are compressed, so
    energy and J/token stretch with simulated time (the CSV keeps wall-clock stamps, like the window, so
    `aggregate_power.py` on the client's own output reproduces the unscaled figures).
    """
    point = measure_point(sampler, result, expected_gpus=expected_gpus)
    out = dataclasses.asdict(point.energy)
    if time_scale != 1.0:
        for key in ("energy_j", "joules_per_token"):
            if out[key] is not None:
                out[key] *= time_scale
        out["per_gpu_energy_j"] = {g: e * time_scale for g, e in out["per_gpu_energy_j"].items()}
        if out["tokens_per_s_per_mw"] is not None:
            out["tokens_per_s_per_mw"] /= time_scale
    out["gpu_metrics_csv"] = point.csv_text
    return out
