"""GPU telemetry: nvidia-smi CSV parsing, null-with-reason (never zero), and energy integration (InferenceX's
aggregate_power.py rules: per-GPU trapezoids, interpolated window ends, 3 s maximum gap)."""

from __future__ import annotations

import pytest

from infersweep.telemetry.gpu import (
    NVIDIA_SMI_CMD,
    GpuSample,
    NoTelemetry,
    NvidiaSmiSource,
    TelemetrySampler,
    TelemetryUnavailableError,
    energy_per_token,
    energy_window,
    parse_nvidia_smi_csv,
    parse_sim_metrics,
)

# `nvidia-smi --query-gpu=index,power.draw,temperature.gpu,clocks.sm,clocks.mem,utilization.gpu,memory.used
#  --format=csv,noheader,nounits` on an 8×H200 node under load (GPU 5 with power reading unsupported).
H200_CSV = """\
0, 652.31, 61, 1980, 3201, 100, 130562
1, 648.90, 59, 1980, 3201, 100, 130562
2, 660.02, 63, 1965, 3201, 99, 130562
3, 641.77, 58, 1980, 3201, 100, 130562
4, 655.40, 60, 1980, 3201, 100, 130562
5, [N/A], 62, 1980, 3201, 100, 130562
6, 649.13, 60, 1980, 3201, 100, 130562
7, 657.88, 61, 1980, 3201, 98, 130562
"""


def test_parse_real_nvidia_smi_output():
    samples = parse_nvidia_smi_csv(H200_CSV, t=100.0)
    assert [s.gpu for s in samples] == list(range(8))
    s0 = samples[0]
    assert (s0.power_w, s0.temperature_c, s0.sm_clock_mhz, s0.mem_clock_mhz, s0.utilization_pct,
            s0.memory_used_mib) == (652.31, 61.0, 1980.0, 3201.0, 100.0, 130562.0)
    assert s0.null_reasons == {} and not s0.simulated and s0.t == 100.0
    s5 = samples[5]
    assert s5.power_w is None and s5.null_reasons == {"power_w": "nvidia-smi reported [N/A]"}
    assert s5.temperature_c == 62.0
    assert NVIDIA_SMI_CMD[1] == ("--query-gpu=index,power.draw,temperature.gpu,clocks.sm,clocks.mem,"
                                 "utilization.gpu,memory.used")


def test_nvidia_smi_errors_become_nulls_with_reason_never_zero():
    out = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
           "latest NVIDIA driver is installed and running.\n")
    with pytest.raises(TelemetryUnavailableError):
        parse_nvidia_smi_csv(out, t=1.0)
    source = NvidiaSmiSource(lambda argv: (9, out))
    sampler = TelemetrySampler(source, clock=lambda: 5.0)
    [s] = sampler.sample_once()
    assert s.gpu == -1 and all(getattr(s, f) is None for f in ("power_w", "temperature_c", "utilization_pct"))
    assert "couldn't communicate with the NVIDIA driver" in s.null_reasons["power_w"]
    assert set(s.null_reasons) == {"power_w", "temperature_c", "sm_clock_mhz", "mem_clock_mhz",
                                   "utilization_pct", "memory_used_mib"}


def test_sampler_keeps_gpu_ids_across_a_failed_read():
    reads = iter([(0, H200_CSV), (126, 'OCI runtime exec failed: exec: "nvidia-smi": executable file not found')])
    sampler = TelemetrySampler(NvidiaSmiSource(lambda argv: next(reads)), clock=iter([1.0, 2.0]).__next__)
    sampler.sample_once()
    failed = sampler.sample_once()
    assert [s.gpu for s in failed] == list(range(8)) and all(s.power_w is None for s in failed)
    assert "executable file not found" in failed[0].null_reasons["power_w"]
    assert len(sampler.samples) == 16


def test_no_telemetry_source_and_energy_is_null_with_reason():
    sampler = TelemetrySampler(NoTelemetry("backend has no GPUs"), clock=iter([0.0, 1.0, 2.0]).__next__)
    for _ in range(3):
        sampler.sample_once()
    w = energy_window(sampler.samples, 0.0, 2.0, output_tokens=100)
    assert (w.energy_j, w.avg_power_w, w.joules_per_token) == (None, None, None)
    assert w.invalid_reasons == ("invalid_power_sample", "no_usable_power_samples")
    assert "power unreadable at 0.000 (backend has no GPUs)" in (w.reason or "")
    assert energy_per_token([], 0.0, 1.0, 10) == (None, None)


def _two_gpus(t: float, p0: float, p1: float) -> list[GpuSample]:
    return [GpuSample(t=t, gpu=0, source="x", power_w=p0), GpuSample(t=t, gpu=1, source="x", power_w=p1)]


def test_energy_integration_on_hand_computed_samples():
    # Node power (sum of 2 GPUs): t=0 → 200 W, t=1 → 400 W, t=2 → 400 W, t=3 → 200 W.
    samples = [*_two_gpus(0, 100, 100), *_two_gpus(1, 150, 250), *_two_gpus(2, 200, 200), *_two_gpus(3, 100, 100)]
    # Window [0.5, 2.5]: P(0.5) = 300, P(2.5) = 300.
    # Trapezoids: [0.5,1] (300+400)/2*0.5 = 175; [1,2] 400; [2,2.5] (400+300)/2*0.5 = 175 → 750 J.
    jpt, avg = energy_per_token(samples, 0.5, 2.5, output_tokens=300)
    assert jpt == pytest.approx(2.5)  # 750 J / 300 tokens
    assert avg == pytest.approx(375.0)  # 750 J / 2 s
    w = energy_window(samples, 0.5, 2.5, 300, expected_gpus=2)
    assert w.energy_j == pytest.approx(750.0) and w.gpus == 2 and w.reason is None and w.invalid_reasons == ()
    # Per GPU: GPU 0 P(0.5) = 125, P(2.5) = 150 → 68.75 + 175 + 87.5; GPU 1 P(0.5) = 175 → 106.25 + 225 + 87.5.
    assert w.per_gpu_energy_j == {"0": pytest.approx(331.25), "1": pytest.approx(418.75)}
    assert w.avg_power_per_gpu_w == pytest.approx(187.5) and w.per_gpu_max_sample_gap_s == {"0": 1.0, "1": 1.0}
    # 150 tok/s at 375 W → 150 / 0.000375 MW = 400,000 tokens per second per MW.
    assert w.tokens_per_s_per_mw == pytest.approx(400_000.0)
    assert (w.start_unix, w.end_unix, w.max_sample_gap_s) == (0.5, 2.5, 3.0)


def test_each_gpu_is_integrated_on_its_own_timestamps():
    # GPU 0 read at 0, 2, 4; GPU 1 at 1, 3, 5 (as two monitors, or one slow read per GPU). Window [1.5, 3.5].
    samples = [GpuSample(t=t, gpu=0, source="x", power_w=p) for t, p in ((0, 100), (2, 300), (4, 100))]
    samples += [GpuSample(t=t, gpu=1, source="x", power_w=p) for t, p in ((1, 200), (3, 400), (5, 200))]
    w = energy_window(samples, 1.5, 3.5, 100)
    # GPU 0: P(1.5) = 250, P(3.5) = 150 → (250+300)/2·0.5 + (300+150)/2·1.5 = 137.5 + 337.5 = 475.
    # GPU 1: P(1.5) = 250, P(3.5) = 350 → (250+400)/2·1.5 + (400+350)/2·0.5 = 487.5 + 187.5 = 675.
    assert w.per_gpu_energy_j == {"0": pytest.approx(475.0), "1": pytest.approx(675.0)}
    assert w.energy_j == pytest.approx(1150.0) and w.joules_per_token == pytest.approx(11.5)
    assert w.avg_power_w == pytest.approx(575.0) and w.avg_power_per_gpu_w == pytest.approx(287.5)


def test_duplicate_timestamps_of_one_gpu_are_averaged():
    samples = [GpuSample(t=0, gpu=0, source="x", power_w=100), GpuSample(t=0, gpu=0, source="x", power_w=300),
               GpuSample(t=2, gpu=0, source="x", power_w=200)]
    assert energy_window(samples, 0, 2, 10).energy_j == pytest.approx(400.0)  # (200 + 200) / 2 · 2


def test_an_unreadable_reading_near_the_window_invalidates_it():
    samples = [*_two_gpus(0, 100, 100), *_two_gpus(1, 100, 100), *_two_gpus(2, 100, 100)]
    samples[3] = GpuSample(t=1, gpu=1, source="x", null_reasons={"power_w": "nvidia-smi reported [N/A]"})
    # InferenceX: any unreadable power value within 3 s of the window fails it (a skipped read would hide a gap).
    w = energy_window(samples, 0, 2, 100)
    assert w.energy_j is None and w.joules_per_token is None and w.invalid_reasons == ("invalid_power_sample",)
    assert "GPU 1 power unreadable at 1.000 (nvidia-smi reported [N/A])" in (w.reason or "")
    # More than 3 s outside the window it is not looked at.
    far = [GpuSample(t=-5, gpu=1, source="x", null_reasons={"power_w": "nvidia-smi reported [N/A]"}),
           *_two_gpus(0, 100, 100), *_two_gpus(1, 100, 100)]
    assert energy_per_token(far, 0, 1, 100) == (pytest.approx(2.0), pytest.approx(200.0))


def test_a_gap_over_three_seconds_is_invalid_and_three_is_not():
    ok = [*_two_gpus(0, 100, 100), *_two_gpus(3, 100, 100), *_two_gpus(4, 100, 100)]
    w = energy_window(ok, 0.5, 3.5, 100)
    assert w.invalid_reasons == () and w.energy_j == pytest.approx(600.0) and w.per_gpu_max_sample_gap_s["0"] == 3.0
    gap = [*_two_gpus(0, 100, 100), *_two_gpus(3.5, 100, 100), *_two_gpus(4, 100, 100)]
    w = energy_window(gap, 0.5, 3.75, 100)
    assert w.energy_j is None and w.invalid_reasons == ("sampling_gap_exceeded",)
    assert w.per_gpu_max_sample_gap_s == {"0": 3.5, "1": 3.5} and "GPU 0 has 3.5 s between" in (w.reason or "")
    assert w.per_gpu_energy_j["0"] == pytest.approx(325.0)  # kept for audit, as InferenceX's sidecar does
    # A long gap entirely outside the window does not count.
    assert energy_window(gap, 3.5, 4.0, 100).invalid_reasons == ()


def test_window_must_be_bracketed_by_readings_of_every_gpu():
    samples = [*_two_gpus(0, 100, 100), *_two_gpus(1, 100, 100)]
    w = energy_window(samples, 0.5, 1.5, 100)  # no reading at or after 1.5: not extrapolated
    assert w.energy_j is None and w.invalid_reasons == ("benchmark_window_not_bracketed",)
    assert energy_window(samples, 10, 20, 100).invalid_reasons == ("no_usable_power_samples",)
    lone = [*samples, GpuSample(t=0.5, gpu=2, source="x", power_w=50.0)]
    assert energy_window(lone, 0.25, 0.75, 100).invalid_reasons == ("insufficient_power_samples",)


def test_gpu_count_must_match_the_server():
    samples = [*_two_gpus(0, 100, 100), *_two_gpus(1, 100, 100)]
    w = energy_window(samples, 0, 1, 100, expected_gpus=8)
    assert w.energy_j is None and w.invalid_reasons == ("expected_gpu_count_mismatch",)
    assert "telemetry shows 2 GPUs [0, 1], the server uses 8" in (w.reason or "")
    assert energy_window(samples, 1, 1, 100).invalid_reasons == ("invalid_benchmark_window",)
    assert energy_window(samples, float("nan"), 1, 100).invalid_reasons == ("invalid_benchmark_window",)


def test_no_output_tokens_keeps_energy_but_no_per_token_figure():
    w = energy_window([*_two_gpus(0, 100, 100), *_two_gpus(1, 100, 100)], 0, 1, 0)
    assert w.energy_j == pytest.approx(200.0) and w.joules_per_token is None
    assert w.invalid_reasons == ("invalid_output_token_count",) and w.reason == "no output tokens in the window"


def test_waiting_for_a_reading_after_the_window():
    sampler = TelemetrySampler(NoTelemetry("none"), clock=iter([1.0, 2.0]).__next__)
    assert sampler.wait_for_sample_after(1.0, timeout_s=0.0) is False  # nothing read yet
    sampler.sample_once()
    assert sampler.wait_for_sample_after(1.0, timeout_s=0.0) is True
    assert sampler.wait_for_sample_after(1.5, timeout_s=0.01) is False
    sampler.sample_once()
    assert sampler.wait_for_sample_after(1.5, timeout_s=0.0) is True


def test_sim_metrics_are_labelled_simulated():
    text = """\
# TYPE sim:gpu_power_watts gauge
sim:gpu_utilization_perc{gpu="0",simulated="true"} 0.75
sim:gpu_power_watts{gpu="0",simulated="true"} 512.5
sim:gpu_memory_used_bytes{gpu="0",simulated="true"} 1048576000
sim:gpu_utilization_perc{gpu="1",simulated="true"} 0.5
sim:gpu_power_watts{gpu="1",simulated="true"} 400.0
sim:gpu_memory_used_bytes{gpu="1",simulated="true"} 1048576000
vllm:num_requests_running{model_name="m"} 3
"""
    samples = parse_sim_metrics(text, t=3.0)
    assert [s.gpu for s in samples] == [0, 1] and all(s.simulated for s in samples)
    s0 = samples[0]
    assert (s0.power_w, s0.utilization_pct, s0.memory_used_mib) == (512.5, 75.0, 1000.0)
    assert s0.temperature_c is None and s0.null_reasons["temperature_c"] == "not modelled by the simulated engine"
    w = energy_window([*samples, *parse_sim_metrics(text, t=4.0)], 3.0, 4.0, 100)
    assert w.simulated and w.energy_j == pytest.approx(912.5)


def test_background_sampler_runs_until_stopped_and_closes_its_source():
    import threading

    class Source:
        name = "fake"

        def __init__(self) -> None:
            self.reads = 0
            self.closed = False
            self.three = threading.Event()

        def read(self, t):
            self.reads += 1
            if self.reads >= 3:
                self.three.set()
            return parse_nvidia_smi_csv("0, 100.0, 50, 1000, 2000, 10, 512\n", t)

        def close(self):
            self.closed = True

    src = Source()
    with TelemetrySampler(src, interval_s=0.01) as sampler:
        assert src.three.wait(timeout=30)
    series = sampler.samples
    assert len(series) >= 3 and src.closed
    assert all(s.power_w == 100.0 for s in series)
    assert [s.t for s in series] == sorted(s.t for s in series)


def test_sim_source_falls_back_to_prometheus_metrics_for_the_trt_flavor() -> None:
    """A TensorRT-LLM-flavoured sim answers /metrics with JSON iteration stats (`[]`), as trtllm-serve does;
    its Prometheus text, with the sim:gpu_* gauges, is at /prometheus/metrics."""
    import http.server
    import threading

    from infersweep.telemetry.gpu import SimMetricsSource

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b"[]" if self.path == "/metrics" else b'sim:gpu_power_watts{gpu="0"} 350.0\n'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = SimMetricsSource(f"http://127.0.0.1:{server.server_address[1]}")
        (sample,) = source.read(1.0)
        assert sample.power_w == 350.0 and sample.simulated
        assert source.read(2.0)[0].power_w == 350.0
        assert hits == ["/metrics", "/prometheus/metrics", "/prometheus/metrics"]  # remembers the path
    finally:
        server.shutdown()
        server.server_close()
