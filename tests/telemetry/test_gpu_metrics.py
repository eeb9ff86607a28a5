"""gpu_metrics.csv export, and our energy integration against InferenceX's `utils/aggregate_power.py` (run as a
subprocess from ../shared on the same hand-made samples: the same figures when valid, the same reasons when not)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from infersweep.telemetry.gpu import ALL_GPUS, GpuSample, energy_window, unavailable
from infersweep.telemetry.gpu_metrics import (
    COLUMNS,
    gpu_metrics_csv,
    gpu_metrics_path,
    point_telemetry,
    window_samples,
    write_gpu_metrics_csv,
)
from tests.conftest import SHARED

AGGREGATE_POWER = SHARED / "reference" / "inferencex-843c6254f" / "utils" / "aggregate_power.py"
T = 1_700_000_000.0  # a unix time; every offset below is exact at the CSV's 6 decimals


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _s(t: float, gpu: int, watts: float | None) -> GpuSample:
    reasons = {} if watts is not None else {"power_w": "nvidia-smi reported [N/A]"}
    return GpuSample(t=T + t, gpu=gpu, source="nvidia-smi", power_w=watts, null_reasons=reasons)


def test_csv_has_nvidia_smi_columns_and_never_writes_zero_for_unknown():
    samples = [
        GpuSample(t=T + 0.25, gpu=1, source="sim-model", simulated=True, power_w=512.5, utilization_pct=75.0,
                  memory_used_mib=1000.0, null_reasons={"temperature_c": "not modelled"}),
        _s(0.0, 0, 0.00001),
        *unavailable(T + 0.5, "nvidia-smi", "driver gone"),
    ]
    text = gpu_metrics_csv(window_samples(samples, T, T + 0.5))
    header = text.splitlines()[0].split(",")
    assert header == [name for name, _ in COLUMNS]
    # aggregate_power.py takes the first column containing "time", the first with "power" (not limit/cap/max/
    # min) and one named exactly `index`: each must be unambiguous
    assert [c for c in header if "time" in c] == ["timestamp"] and [c for c in header if "power" in c] == [
        "power.draw [W]"] and "index" in header
    rows = _rows(text)
    assert [r["timestamp"] for r in rows] == ["1700000000.000000", "1700000000.250000", "1700000000.500000"]
    assert rows[0]["power.draw [W]"] == "0.00001"  # fixed notation: "1e-05" would be read as 1 W
    assert (rows[1]["index"], rows[1]["power.draw [W]"], rows[1]["temperature.gpu"], rows[1]["simulated"]) == (
        "1", "512.5", "[N/A]", "1")
    assert rows[2]["index"] == "" and rows[2]["power.draw [W]"] == "[N/A]"  # a read that named no GPU
    assert ALL_GPUS == -1


def test_window_samples_keep_the_pad_and_sort_by_time_then_gpu():
    samples = [_s(t, g, 100.0) for t in (-11.0, -10.0, 0.0, 5.0, 15.0, 15.5) for g in (1, 0)]
    kept = window_samples(samples, T, T + 5.0)
    assert [(s.t - T, s.gpu) for s in kept] == [(-10.0, 0), (-10.0, 1), (0.0, 0), (0.0, 1), (5.0, 0), (5.0, 1),
                                                (15.0, 0), (15.0, 1)]


def test_write_is_atomic_and_named_beside_the_result(tmp_path: Path):
    assert gpu_metrics_path(tmp_path / "res_conc8.json") == tmp_path / "res_conc8_gpu_metrics.csv"
    path = write_gpu_metrics_csv(tmp_path / "d" / "x.csv", "timestamp,index\n")
    assert path.read_text() == "timestamp,index\n" and [p.name for p in path.parent.iterdir()] == ["x.csv"]


def test_point_telemetry_reads_the_window_from_the_result():
    samples = [_s(t, g, 100.0 * (g + 1)) for t in (0.0, 1.0, 2.0, 30.0) for g in (0, 1)]
    result = {"benchmark_start_time_unix": T + 0.5, "benchmark_end_time_unix": T + 1.5, "total_output_tokens": 30}
    point = point_telemetry(samples, result, expected_gpus=2)
    assert point.energy.energy_j == pytest.approx(300.0) and point.energy.joules_per_token == pytest.approx(10.0)
    assert len(_rows(point.csv_text)) == 6  # the reading at +30 s is outside the 10 s pad
    bare = point_telemetry(samples, {"total_output_tokens": 30}, expected_gpus=2)
    assert bare.energy.invalid_reasons == ("invalid_benchmark_window",) and len(_rows(bare.csv_text)) == 8


# --- against the reference -------------------------------------------------------------------------------------
STAGGERED = [_s(t, 0, p) for t, p in ((0.0, 310.0), (1.0, 402.5), (2.0, 388.25), (3.0, 290.0))] + [
    _s(t, 1, p) for t, p in ((0.5, 120.0), (1.5, 455.0), (2.5, 401.75), (3.5, 200.0))]
CASES = {
    # name: (samples, window offsets, expected GPUs, InferenceX reason codes)
    "valid-staggered": (STAGGERED, (0.75, 2.75), 2, []),
    "gap-over-3s": ([_s(t, 0, 300.0) for t in (0.0, 0.5, 4.0, 4.5)], (0.75, 4.25), 1, ["sampling_gap_exceeded"]),
    "gap-of-3s": ([_s(t, 0, 300.0 + t) for t in (0.0, 0.5, 3.5, 4.0)], (0.75, 3.75), 1, []),
    "unreadable-reading": ([*STAGGERED, _s(1.25, 0, None)], (0.75, 2.75), 2, ["invalid_power_sample"]),
    "read-without-gpus": ([*STAGGERED, *unavailable(T + 1.25, "nvidia-smi", "driver gone")], (0.75, 2.75), 2,
                          ["invalid_power_sample"]),
    "not-bracketed": (STAGGERED, (0.75, 3.25), 2, ["benchmark_window_not_bracketed"]),
    "gpu-count": (STAGGERED, (0.75, 2.75), 8, ["expected_gpu_count_mismatch"]),
}


def _aggregate_power(tmp: Path, samples: list[GpuSample], start: float, end: float, gpus: int,
                     output_tokens: int) -> tuple[int, dict, dict]:
    if not AGGREGATE_POWER.is_file():
        pytest.skip(f"InferenceX aggregate_power.py not found at {AGGREGATE_POWER} (shared/ reference absent)")
    csv_path = write_gpu_metrics_csv(tmp / "gpu_metrics.csv", gpu_metrics_csv(samples))
    bench = {"benchmark_start_time_unix": start, "benchmark_end_time_unix": end, "duration": end - start,
             "completed": 10, "total_input_tokens": 1000, "total_output_tokens": output_tokens}
    (tmp / "res.json").write_text(json.dumps(bench))
    (tmp / "agg_res.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, str(AGGREGATE_POWER), "--csv", str(csv_path), "--bench-result", str(tmp / "res.json"),
         "--agg-result", str(tmp / "agg_res.json"), "--expected-num-gpus", str(gpus),
         "--validation-result", str(tmp / "validation.json"), "--require-power"],
        cwd=tmp, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return (proc.returncode, json.loads((tmp / "agg_res.json").read_text()),
            json.loads((tmp / "validation.json").read_text()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_verdict_and_figures_as_aggregate_power(case: str, tmp_path: Path):
    samples, (a, b), gpus, reasons = CASES[case]
    ours = energy_window(samples, T + a, T + b, 500, expected_gpus=gpus)
    rc, agg, sidecar = _aggregate_power(tmp_path, samples, T + a, T + b, gpus, 500)
    assert sidecar["reasons"] == reasons and list(ours.invalid_reasons) == reasons
    assert rc == (1 if reasons else 0) and agg["power_valid"] == (0 if reasons else 1)  # --require-power
    assert ours.per_gpu_max_sample_gap_s == pytest.approx(sidecar["per_gpu_max_sample_gap_s"])
    assert ours.per_gpu_energy_j == pytest.approx(sidecar["per_gpu_energy_j"], rel=1e-9)
    if reasons:
        assert ours.joules_per_token is None and "joules_per_output_token" not in agg
    else:
        assert ours.joules_per_token == pytest.approx(agg["joules_per_output_token"], rel=0.005)
        assert ours.energy_j == pytest.approx(sidecar["metrics"]["total_gpu_energy_j"], rel=1e-6)
        assert ours.avg_power_per_gpu_w == pytest.approx(agg["avg_power_w"], abs=1e-3)
        assert ours.avg_power_w == pytest.approx(agg["avg_total_gpu_power_w"], abs=1e-3)
