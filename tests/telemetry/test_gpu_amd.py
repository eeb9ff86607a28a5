"""AMD telemetry (issue 17): `amd-smi metric --json` parsed into GpuSamples (power, clocks, utilisation, memory,
temperature) with the nvidia-smi source's null-with-reason rule, and amd-smi chosen for AMD runners.

Fixture shapes come from AMD's amd-smi CLI source and docs (no AMD hardware was available to capture them):
- ROCm/amdsmi CHANGELOG.md, "amd_smi_lib for ROCm 6.1.0 → Added units of measure to JSON output": the
  `amd-smi metric -p --json` example, reproduced verbatim as CHANGELOG_6_1_POWER;
- ROCm/amdsmi amdsmi_cli/amdsmi_commands.py `metric_gpu` at commit 0ceca28 (package 24.7.0, ROCm 6.2/6.3):
  the JSON dicts it builds for --usage/--power/--clock/--temperature/--mem-usage (MI300X_24X below, 8 XCDs, so
  gfx_0..gfx_7 clocks; MI300's edge temperature reads N/A);
- github.com/henrygd/beszel/issues/737: a user's real `amd-smi metric -u --json` (usage section shape);
- ROCm/amdsmi tag rocm-6.0.0, amdsmi_commands.py: the 23.x shape, plain numbers without units
  (`power.current_power`, `usage.gfx_usage`, `clock.gfx.cur_clk`, `clock.MEM.cur_clk`).
"""

from __future__ import annotations

import importlib
import json
import types
from typing import Any

import pytest

from infersweep.telemetry import gpu as gpu_mod
from infersweep.telemetry.gpu import (
    AMD_SMI_CMD,
    METRIC_FIELDS,
    AmdSmiSource,
    NvidiaSmiSource,
    SimMetricsSource,
    TelemetrySampler,
    TelemetryUnavailableError,
    energy_window,
    parse_amd_smi_json,
    runner_vendor,
    source_for,
)

CHANGELOG_6_1_POWER = """\
[
    {
        "gpu": 0,
        "power": {
            "socket_power": {
                "value": 10,
                "unit": "W"
            },
            "gfx_voltage": {
                "value": 6,
                "unit": "mV"
            },
            "soc_voltage": {
                "value": 918,
                "unit": "mV"
            },
            "mem_voltage": {
                "value": 1250,
                "unit": "mV"
            },
            "power_management": "ENABLED",
            "throttle_status": "UNTHROTTLED"
        }
    }
]
"""


def _v(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit}


def _clk(mhz: float | str) -> dict[str, Any]:
    clk = mhz if isinstance(mhz, str) else _v(mhz, "MHz")
    return {"clk": clk, "min_clk": _v(500, "MHz"), "max_clk": _v(2100, "MHz"), "clk_locked": "DISABLED",
            "deep_sleep": "DISABLED"}


def _mi300x_gpu(index: int, *, power: Any, gfx: list[float | str]) -> dict[str, Any]:
    """One GPU as amdsmi_commands.py (24.7.0) prints it with --json."""
    clocks: dict[str, Any] = {f"gfx_{i}": _clk(c) for i, c in enumerate(gfx)}
    clocks["mem_0"] = _clk(1300)
    clocks |= {f"vclk_{i}": _clk("N/A") for i in range(4)} | {f"dclk_{i}": _clk("N/A") for i in range(4)}
    return {
        "gpu": index,
        "usage": {"gfx_activity": _v(100, "%"), "umc_activity": _v(38, "%"), "mm_activity": "N/A",
                  "vcn_activity": [_v(0, "%"), "N/A", "N/A", "N/A"], "jpeg_activity": ["N/A"] * 4,
                  "gfx_busy_inst": "N/A", "jpeg_busy": "N/A", "vcn_busy": "N/A", "gfx_busy_acc": "N/A"},
        "power": {"socket_power": power, "gfx_voltage": "N/A", "soc_voltage": "N/A", "mem_voltage": "N/A",
                  "throttle_status": "UNTHROTTLED", "power_management": "ENABLED"},
        "clock": clocks,
        "temperature": {"edge": "N/A", "hotspot": _v(71, "C"), "mem": _v(58, "C")},
        "mem_usage": {"total_vram": _v(196592, "MB"), "used_vram": _v(181234, "MB"), "free_vram": _v(15358, "MB"),
                      "total_visible_vram": _v(196592, "MB"), "used_visible_vram": _v(181234, "MB"),
                      "free_visible_vram": _v(15358, "MB"), "total_gtt": _v(128716, "MB"),
                      "used_gtt": _v(20, "MB"), "free_gtt": _v(128696, "MB")},
    }


MI300X_24X = json.dumps([
    _mi300x_gpu(0, power=_v(701, "W"), gfx=[2100, 2100, 2090, 2100, 2100, 2080, 2100, 2100]),
    _mi300x_gpu(1, power="N/A", gfx=["N/A"] * 8),
], indent=4)

ROCM_6_0 = json.dumps([{
    "gpu": 0,
    "usage": {"gfx_usage": 97, "mem_usage": 41, "mm_ip_usage": "N/A"},
    "power": {"current_power": 612, "current_gfx_voltage": "N/A", "current_soc_voltage": "N/A",
              "current_mem_voltage": "N/A", "power_limit": 750, "power_management": "ENABLED",
              "throttle_status": "UNTHROTTLED"},
    "clock": {"gfx": {"cur_clk": 2098, "min_clk": 500, "max_clk": 2100, "sleep_clk": "N/A", "is_clk_locked": "N/A"},
              "MEM": {"cur_clk": 1300, "min_clk": 900, "max_clk": 1300, "sleep_clk": "N/A"}},
    "temperature": {"edge": "N/A", "hotspot": 66, "mem": 55},
    "mem_usage": {"total_vram": 196592, "used_vram": 180000, "free_vram": 16592},
}], indent=4)


def test_cmd_asks_amd_smi_for_every_section_as_json():
    assert AMD_SMI_CMD == ("amd-smi", "metric", "--power", "--clock", "--usage", "--mem-usage", "--temperature",
                           "--json")


def test_parse_amd_smi_24x_shape_with_units():
    s0, s1 = parse_amd_smi_json(MI300X_24X, t=10.0)
    assert (s0.gpu, s0.t, s0.source, s0.simulated) == (0, 10.0, "amd-smi", False)
    assert s0.power_w == 701.0 and s0.temperature_c == 71.0  # hotspot: MI300's edge sensor reads N/A
    assert s0.sm_clock_mhz == pytest.approx((2100 * 6 + 2090 + 2080) / 8)  # mean over the XCDs' gfx clocks
    assert (s0.mem_clock_mhz, s0.utilization_pct, s0.memory_used_mib) == (1300.0, 100.0, 181234.0)
    assert s0.null_reasons == {}
    assert s1.power_w is None and s1.sm_clock_mhz is None
    assert s1.null_reasons == {"power_w": "amd-smi reported 'N/A' for power.socket_power",
                               "sm_clock_mhz": "amd-smi reported 'N/A' for clock.gfx_0.clk"}
    assert s1.utilization_pct == 100.0


def test_parse_the_changelog_power_only_example():
    [s] = parse_amd_smi_json(CHANGELOG_6_1_POWER, t=1.0)
    assert s.gpu == 0 and s.power_w == 10.0
    assert set(s.null_reasons) == set(METRIC_FIELDS) - {"power_w"}
    assert s.null_reasons["utilization_pct"] == "amd-smi output has no usage.gfx_activity / usage.gfx_usage"
    assert s.null_reasons["sm_clock_mhz"] == "amd-smi output has no clock section"


def test_parse_amd_smi_23x_plain_numbers():
    [s] = parse_amd_smi_json(ROCM_6_0, t=2.0)
    assert (s.power_w, s.temperature_c, s.sm_clock_mhz, s.mem_clock_mhz, s.utilization_pct,
            s.memory_used_mib) == (612.0, 66.0, 2098.0, 1300.0, 97.0, 180000.0)
    assert s.null_reasons == {}


def test_na_sections_missing_fields_and_other_names_and_units():
    doc = {"gpu_data": [  # a wrapper object around the GPU list, read as well as a bare list
        {"gpu": 3, "usage": "N/A",
         "power": {"current_socket_power": "N/A", "average_socket_power": _v(455000, "mW")},
         "clock": {"gfx_0": {"clk": "1.9 GHz"}, "mem_0": {"clk": _v(1300, "furlongs")}},
         "temperature": {"edge": 41, "hotspot": "N/A"}},
    ]}
    [s] = parse_amd_smi_json("WARNING: some banner\n" + json.dumps(doc), t=3.0)
    assert s.gpu == 3 and s.power_w == pytest.approx(455.0) and s.sm_clock_mhz == pytest.approx(1900.0)
    assert s.temperature_c == 41.0  # hotspot N/A → edge
    assert s.utilization_pct is None and s.null_reasons["utilization_pct"] == "amd-smi reported 'N/A' for usage"
    assert s.mem_clock_mhz is None
    assert s.null_reasons["mem_clock_mhz"] == "amd-smi reported clock.mem_0.clk in an unknown unit 'furlongs'"
    assert s.memory_used_mib is None and s.null_reasons["memory_used_mib"] == "amd-smi output has no mem_usage.used_vram"
    for f in METRIC_FIELDS:  # never 0 for something unreadable
        assert (getattr(s, f) is None) == (f in s.null_reasons)


@pytest.mark.parametrize("text", ["", "ERROR:root:Unable to detect any GPU devices, check amdgpu version\n",
                                  '{"error": "nope"}', "[1, 2]", '[{"power": {}}]', "[{bad json"])
def test_output_that_is_not_metric_json_is_unavailable(text: str):
    with pytest.raises(TelemetryUnavailableError):
        parse_amd_smi_json(text, t=0.0)


def test_failed_read_gives_null_samples_with_the_reason():
    out = "AMD-SMI: amdgpu driver not loaded"
    sampler = TelemetrySampler(AmdSmiSource(lambda argv: (255, out)), clock=lambda: 5.0)
    [s] = sampler.sample_once()
    assert s.gpu == -1 and s.source == "amd-smi" and all(getattr(s, f) is None for f in METRIC_FIELDS)
    assert s.null_reasons["power_w"] == f"amd-smi exited 255: {out}"


def test_missing_binary_is_the_same_unavailable_error_as_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither tool on PATH
    errors = {}
    for cls in (NvidiaSmiSource, AmdSmiSource):
        with pytest.raises(TelemetryUnavailableError) as exc:
            cls.local(timeout_s=2.0).read(0.0)
        errors[cls.__name__] = str(exc.value)
    assert errors == {"NvidiaSmiSource": "nvidia-smi exited 127: nvidia-smi not found on this host",
                      "AmdSmiSource": "amd-smi exited 127: amd-smi not found on this host"}


class _FakeDocker:
    """Just enough of docker.DockerClient's low-level API for exec."""

    def __init__(self, output: bytes | None = None, code: int = 0, error: str | None = None) -> None:
        self.output, self.code, self.error, self.closed = output, code, error, False
        self.argv: list[str] | None = None
        self.api = self

    def exec_create(self, container: str, argv: list[str], **_: Any) -> dict[str, str]:
        if self.error is not None:
            import docker.errors

            raise docker.errors.APIError(self.error)
        self.argv = argv
        return {"Id": "e1"}

    def exec_start(self, _id: str) -> bytes | None:
        return self.output

    def exec_inspect(self, _id: str) -> dict[str, int]:
        return {"ExitCode": self.code}

    def close(self) -> None:
        self.closed = True


def test_in_container_execs_amd_smi_and_reports_a_missing_binary():
    client = _FakeDocker(MI300X_24X.encode())
    src = AmdSmiSource.in_container(client, "c1", owns_client=True)  # type: ignore[arg-type]
    got = src.read(1.0)
    assert client.argv == list(AMD_SMI_CMD) and [s.gpu for s in got] == [0, 1]
    assert got[0].source == "amd-smi (docker exec)"
    src.close()
    assert client.closed
    missing = AmdSmiSource.in_container(
        _FakeDocker(error='exec: "amd-smi": executable file not found in $PATH'), "c1")  # type: ignore[arg-type]
    with pytest.raises(TelemetryUnavailableError, match=r"amd-smi exited 126: .*executable file not found"):
        missing.read(1.0)


def test_energy_integrates_amd_samples():
    reads = iter([MI300X_24X.replace('"value": 701', f'"value": {w}') for w in (700, 720, 740)])
    sampler = TelemetrySampler(AmdSmiSource(lambda argv: (0, next(reads))), clock=iter([0.0, 1.0, 2.0]).__next__)
    for _ in range(3):
        sampler.sample_once()
    gpu0 = [s for s in sampler.samples if s.gpu == 0]
    w = energy_window(gpu0, 0.0, 2.0, output_tokens=100)
    assert w.energy_j == pytest.approx(1440.0) and w.joules_per_token == pytest.approx(14.4)
    # GPU 1's power is N/A: the window is invalid, never "free" energy
    both = energy_window(sampler.samples, 0.0, 2.0, output_tokens=100)
    assert both.energy_j is None and "invalid_power_sample" in both.invalid_reasons


@pytest.mark.parametrize(("runner", "vendor"), [("mi300x", "amd"), ("mi325x-amd", "amd"), ("cluster:mi355x", "amd"),
                                                ("h200", "nvidia"), ("b200-dgxc", "nvidia"), ("cpu", "nvidia"),
                                                (None, "nvidia")])
def test_runner_vendor(runner: str | None, vendor: str):
    assert runner_vendor(runner) == vendor


def test_source_for_picks_amd_smi_for_amd_runners_and_nvidia_smi_otherwise():
    docker_handle = types.SimpleNamespace(backend="docker", id="c1", base_url="http://x", extra={})
    client: Any = _FakeDocker(MI300X_24X.encode())
    amd = source_for(docker_handle, docker_client=client, runner="mi300x")
    assert isinstance(amd, AmdSmiSource) and amd.name == "amd-smi (docker exec)"
    nv = source_for(docker_handle, docker_client=client, runner="h200")
    assert isinstance(nv, NvidiaSmiSource) and nv.name == "nvidia-smi (docker exec)"
    assert isinstance(source_for(docker_handle, docker_client=client), NvidiaSmiSource)  # no runner: as before
    proc = types.SimpleNamespace(backend="process", id="123", base_url="http://x", extra={})
    assert isinstance(source_for(proc, runner="mi355x"), AmdSmiSource)
    assert isinstance(source_for(proc, runner="b300"), NvidiaSmiSource)
    sim = types.SimpleNamespace(backend="sim", id="1", base_url="http://x", extra={})
    assert isinstance(source_for(sim, runner="mi325x"), SimMetricsSource)


def test_benchmark_step_passes_the_nodes_runner(monkeypatch):
    benchmark = importlib.import_module("infersweep.airflow.steps.benchmark")  # the package exports a same-named function
    seen: dict[str, Any] = {}

    def fake_source_for(handle: Any, **kw: Any) -> Any:
        seen.update(kw)
        return gpu_mod.NoTelemetry("test")

    monkeypatch.setattr(gpu_mod, "source_for", fake_source_for)
    logs: list[dict[str, Any]] = []
    deps: Any = types.SimpleNamespace(store=types.SimpleNamespace(record_server_log=lambda **kw: logs.append(kw)))
    served: Any = types.SimpleNamespace(
        group=types.SimpleNamespace(id="g1"),
        state=types.SimpleNamespace(handle=object(), node=types.SimpleNamespace(name="n1", runner="mi300x")))
    with benchmark.telemetry(deps, served, 1):
        pass
    assert seen == {"runner": "mi300x"} and logs[0]["source"] == "gpu-telemetry"
