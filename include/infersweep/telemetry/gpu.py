"""GPU telemetry while a serve group runs: one sample per GPU per second, and energy per output token.

Energy is integrated as InferenceX's `utils/aggregate_power.py` does (see `energy_window`); `gpu_metrics.py`
writes a point's samples as the CSV that script reads, so its figure can be reproduced from our files.

Sources:
- Docker: `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` exec'd in the serving container (the
  NVIDIA runtime mounts nvidia-smi into it), so the figures are exactly the GPUs the server was given;
- local process: the same command on the host;
- AMD runners (mi300x, mi325x, mi355x): `amd-smi metric ... --json` instead, run the same two ways;
- simulator: its `/metrics` `sim:gpu_*` gauges, modelled not measured, so every sample says `simulated=True`.

A field that cannot be read is None with a reason in `null_reasons` — never 0, because a 0 W reading would
silently turn into "free" tokens in energy per token.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import re
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Protocol, Self

from infersweep.faults.errors import InfersweepError

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)

# (nvidia-smi query field, GpuSample attribute)
NVIDIA_SMI_QUERY: tuple[tuple[str, str], ...] = (
    ("index", "gpu"),
    ("power.draw", "power_w"),
    ("temperature.gpu", "temperature_c"),
    ("clocks.sm", "sm_clock_mhz"),
    ("clocks.mem", "mem_clock_mhz"),
    ("utilization.gpu", "utilization_pct"),
    ("memory.used", "memory_used_mib"),
)
NVIDIA_SMI_CMD: tuple[str, ...] = (
    "nvidia-smi", "--query-gpu=" + ",".join(q for q, _ in NVIDIA_SMI_QUERY), "--format=csv,noheader,nounits",
)
METRIC_FIELDS = ("power_w", "temperature_c", "sm_clock_mhz", "mem_clock_mhz", "utilization_pct", "memory_used_mib")
ALL_GPUS = -1  # `gpu` of a sample that stands for "every GPU" (nothing could be read at all)


class TelemetryUnavailableError(InfersweepError, RuntimeError):
    """The source could not be read at all (no nvidia-smi, exec failed, server gone)."""


@dataclass(frozen=True)
class GpuSample:
    """One GPU at one instant. None fields carry their reason in `null_reasons`."""

    t: float
    gpu: int
    source: str
    power_w: float | None = None
    temperature_c: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    utilization_pct: float | None = None
    memory_used_mib: float | None = None
    simulated: bool = False
    null_reasons: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t, "gpu": self.gpu, "source": self.source, "simulated": self.simulated,
                **{f: getattr(self, f) for f in METRIC_FIELDS}, "null_reasons": dict(self.null_reasons)}


def unavailable(t: float, source: str, reason: str, gpus: Iterable[int] = (ALL_GPUS,),
                simulated: bool = False) -> list[GpuSample]:
    """Samples with every field null for `reason` (one per known GPU, or one for all)."""
    return [GpuSample(t=t, gpu=g, source=source, simulated=simulated,
                      null_reasons=dict.fromkeys(METRIC_FIELDS, reason)) for g in gpus]


# -----------------------------------------------------------------------------------------------------------
# nvidia-smi
# -----------------------------------------------------------------------------------------------------------
def _cell(raw: str) -> tuple[float | None, str | None]:
    value = raw.strip()
    if not value or value.startswith("["):  # "[N/A]", "[Not Supported]", "[Unknown Error]", "[GPU is lost]"
        return None, f"nvidia-smi reported {value or 'an empty value'}"
    try:
        return float(value), None
    except ValueError:
        return None, f"nvidia-smi reported {value!r}"


def parse_nvidia_smi_csv(text: str, t: float, *, source: str = "nvidia-smi") -> list[GpuSample]:
    """Parse `nvidia-smi --query-gpu=<NVIDIA_SMI_QUERY> --format=csv,noheader,nounits` output.

    Raises TelemetryUnavailableError when the text is not that CSV (e.g. an error message).
    """
    samples: list[GpuSample] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != len(NVIDIA_SMI_QUERY):
            raise TelemetryUnavailableError(f"unexpected nvidia-smi output: {line.strip()[:200]!r}")
        index, _ = _cell(cells[0])
        if index is None:
            raise TelemetryUnavailableError(f"nvidia-smi row without a GPU index: {line.strip()[:200]!r}")
        values: dict[str, float | None] = {}
        reasons: dict[str, str] = {}
        for (_, attr), raw in zip(NVIDIA_SMI_QUERY[1:], cells[1:], strict=True):
            v, why = _cell(raw)
            values[attr] = v
            if why is not None:
                reasons[attr] = why
        samples.append(GpuSample(
            t=t, gpu=int(index), source=source, null_reasons=reasons, power_w=values["power_w"],
            temperature_c=values["temperature_c"], sm_clock_mhz=values["sm_clock_mhz"],
            mem_clock_mhz=values["mem_clock_mhz"], utilization_pct=values["utilization_pct"],
            memory_used_mib=values["memory_used_mib"],
        ))
    if not samples:
        raise TelemetryUnavailableError("nvidia-smi printed no GPUs")
    return samples


class TelemetrySource(Protocol):
    """Reads every GPU once."""

    name: str

    def read(self, t: float) -> list[GpuSample]:
        """Samples stamped `t`; raises TelemetryUnavailableError (or any error) when nothing is readable."""
        ...


class _SmiSource:
    """A vendor tool (nvidia-smi, amd-smi) through a runner: `run(argv) -> (exit_code, output)`. Subclasses
    name the tool, its command line and the parser of its output."""

    TOOL: str = ""
    CMD: Sequence[str] = ()

    def __init__(self, run: Callable[[Sequence[str]], tuple[int, str]], *, name: str | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        self._run = run
        self.name = name or self.TOOL
        self._on_close = on_close

    def close(self) -> None:
        """Release what the runner holds (e.g. a Docker client this source created)."""
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def parse(self, out: str, t: float) -> list[GpuSample]:
        raise NotImplementedError

    def read(self, t: float) -> list[GpuSample]:
        code, out = self._run(self.CMD)
        if code != 0:
            raise TelemetryUnavailableError(f"{self.TOOL} exited {code}: {out.strip()[:200]}")
        return self.parse(out, t)

    @classmethod
    def local(cls, *, timeout_s: float = 5.0) -> Self:
        """The tool on this host (local-process backend)."""
        return cls(_host_runner(cls.TOOL, timeout_s))

    @classmethod
    def in_container(cls, client: docker.DockerClient, container_id: str, *, owns_client: bool = False) -> Self:
        """The tool exec'd inside the serving container (its client's timeout bounds each call)."""
        return cls(_container_runner(client, container_id), name=f"{cls.TOOL} (docker exec)",
                   on_close=client.close if owns_client else None)


class NvidiaSmiSource(_SmiSource):
    """nvidia-smi's CSV query of every GPU."""

    TOOL = "nvidia-smi"
    CMD = NVIDIA_SMI_CMD

    def parse(self, out: str, t: float) -> list[GpuSample]:
        return parse_nvidia_smi_csv(out, t, source=self.name)


# -----------------------------------------------------------------------------------------------------------
# amd-smi (AMD Instinct runners: mi300x, mi325x, mi355x)
# -----------------------------------------------------------------------------------------------------------
# `amd-smi metric --json` with power, clocks, usage, memory usage and temperature. Field names come from the
# amd-smi CLI source, ROCm/amdsmi `amdsmi_cli/amdsmi_commands.py` (`metric_gpu`), in two shapes:
# - amd-smi 24.x (ROCm 6.1 .. 6.2; read at ROCm/amdsmi 0ceca28, package 24.7.0, and the ROCm 6.1.0 changelog
#   "Added units of measure to JSON output"): a list of `{"gpu": N, "power": {"socket_power": {"value": 750,
#   "unit": "W"}}, "usage": {"gfx_activity": {"value": 99, "unit": "%"}}, "clock": {"gfx_0": {"clk": {...
#   "MHz"}}, .., "mem_0": {"clk": ..}}, "temperature": {"edge", "hotspot", "mem"}, "mem_usage": {"used_vram":
#   {"value": N, "unit": "MB"}}}` — `used_vram` is bytes // 2**20, so its "MB" is MiB;
# - amd-smi 23.x (ROCm 6.0; tag rocm-6.0.0): plain numbers without units, `power.current_power` (current, else
#   average socket power, W), `usage.gfx_usage`, `clock.gfx.cur_clk` / `clock.MEM.cur_clk`.
# A field amd-smi cannot read is the string "N/A" (or the whole section is "N/A"). Later releases are read by
# the same rules: a list of GPUs, or an object holding one (e.g. `{"gpu_data": [...]}`); `average_socket_power`
# / `current_socket_power` are accepted where `socket_power` is absent; values with units are converted.
AMD_SMI_CMD: tuple[str, ...] = ("amd-smi", "metric", "--power", "--clock", "--usage", "--mem-usage",
                                "--temperature", "--json")

_AMD_UNITS: dict[str, dict[str, float]] = {
    "power_w": {"w": 1.0, "mw": 1e-3, "uw": 1e-6, "µw": 1e-6, "kw": 1e3},
    "temperature_c": {"c": 1.0, "°c": 1.0},
    "sm_clock_mhz": {"mhz": 1.0, "ghz": 1e3, "khz": 1e-3, "hz": 1e-6},
    "mem_clock_mhz": {"mhz": 1.0, "ghz": 1e3, "khz": 1e-3, "hz": 1e-6},
    "utilization_pct": {"%": 1.0},
    # amd-smi's "MB" is MiB (bytes // 1024**2 in amdsmi_commands.py)
    "memory_used_mib": {"mb": 1.0, "mib": 1.0, "gb": 1024.0, "gib": 1024.0, "kb": 1 / 1024, "kib": 1 / 1024,
                        "b": 1 / (1024 * 1024)},
}

# GpuSample attribute → candidate paths in one GPU's object, newest name first
_AMD_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "power_w": (("power", "socket_power"), ("power", "current_socket_power"),
                ("power", "average_socket_power"), ("power", "current_power")),
    "temperature_c": (("temperature", "hotspot"), ("temperature", "edge")),  # MI300's edge sensor reads N/A
    "mem_clock_mhz": (("clock", "mem_0", "clk"), ("clock", "mem", "clk"), ("clock", "mem", "cur_clk")),
    "utilization_pct": (("usage", "gfx_activity"), ("usage", "gfx_usage")),
    "memory_used_mib": (("mem_usage", "used_vram"),),
}


def _amd_get(obj: Any, path: Sequence[str]) -> tuple[bool, Any]:
    """(found, value) of `path` in nested dicts, keys matched case-insensitively."""
    for key in path:
        if not isinstance(obj, dict):
            return False, None
        if key in obj:
            obj = obj[key]
            continue
        match = next((k for k in obj if isinstance(k, str) and k.lower() == key.lower()), None)
        if match is None:
            return False, None
        obj = obj[match]
    return True, obj


def _amd_number(raw: Any, attr: str, what: str) -> tuple[float | None, str | None]:
    """A value amd-smi printed (number, "N/A", "750 W" or {"value": 750, "unit": "W"}) in GpuSample units."""
    unit: str | None = None
    if isinstance(raw, dict) and "value" in raw:
        unit = str(raw.get("unit") or "").strip() or None
        raw = raw["value"]
    if isinstance(raw, str):
        m = re.fullmatch(r"\s*(-?\d+(?:\.\d+)?)\s*([^\d\s]*)\s*", raw)
        if m is None:
            return None, f"amd-smi reported {raw.strip() or 'an empty value'!r} for {what}"
        raw, unit = float(m[1]), (m[2] or unit)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None, f"amd-smi reported {raw!r} for {what}"
    value = float(raw)
    if not math.isfinite(value):
        return None, f"amd-smi reported {raw!r} for {what}"
    if unit is not None:
        scale = _AMD_UNITS[attr].get(unit.lower())
        if scale is None:
            return None, f"amd-smi reported {what} in an unknown unit {unit!r}"
        value *= scale
    return value, None


def _amd_field(gpu: dict[str, Any], attr: str) -> tuple[float | None, str | None]:
    """The first of `attr`'s paths present; 'N/A' → None with the reason."""
    first_na: str | None = None
    for path in _AMD_PATHS[attr]:
        found, raw = _amd_get(gpu, path)
        if not found:
            # a whole section "N/A" (e.g. `"usage": "N/A"`) stands for every field in it
            sec_found, sec = _amd_get(gpu, path[:1])
            if sec_found and not isinstance(sec, dict) and first_na is None:
                first_na = f"amd-smi reported {sec!r} for {path[0]}"
            continue
        value, why = _amd_number(raw, attr, ".".join(path))
        if why is None:
            return value, None
        first_na = first_na or why
    if first_na is not None:
        return None, first_na
    return None, "amd-smi output has no " + " / ".join(".".join(p) for p in _AMD_PATHS[attr])


def _amd_gfx_clock(gpu: dict[str, Any]) -> tuple[float | None, str | None]:
    """GFX clock in MHz: the mean over the readable `clock.gfx_N.clk` (MI300-series: one per XCD), else the
    23.x `clock.gfx.cur_clk`."""
    found, clocks = _amd_get(gpu, ("clock",))
    if not found:
        return None, "amd-smi output has no clock section"
    if not isinstance(clocks, dict):
        return None, f"amd-smi reported {clocks!r} for clock"
    values: list[float] = []
    first_na: str | None = None
    keys = sorted((k for k in clocks if re.fullmatch(r"gfx_\d+", str(k).lower())), key=lambda k: int(k[4:]))
    for k in keys:
        v, why = _amd_number((clocks[k] or {}).get("clk") if isinstance(clocks[k], dict) else clocks[k],
                             "sm_clock_mhz", f"clock.{k}.clk")
        if v is not None:
            values.append(v)
        elif first_na is None:
            first_na = why
    if values:
        return statistics.fmean(values), None
    if not keys:
        found, raw = _amd_get(clocks, ("gfx", "cur_clk"))
        if found:
            return _amd_number(raw, "sm_clock_mhz", "clock.gfx.cur_clk")
        return None, "amd-smi output has no clock.gfx_N.clk"
    return None, first_na


def _amd_gpu_list(doc: Any) -> list[Any] | None:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        if "gpu" in doc:
            return [doc]
        for v in doc.values():  # a wrapper such as {"gpu_data": [...]}
            if isinstance(v, list) and v and all(isinstance(x, dict) and "gpu" in x for x in v):
                return v
    return None


def parse_amd_smi_json(text: str, t: float, *, source: str = "amd-smi") -> list[GpuSample]:
    """Parse `amd-smi metric ... --json` output (see AMD_SMI_CMD for the shapes read).

    Raises TelemetryUnavailableError when the text holds no such JSON (e.g. an error message).
    """
    start = min((i for i in (text.find("["), text.find("{")) if i >= 0), default=-1)
    if start < 0:
        raise TelemetryUnavailableError(f"unexpected amd-smi output: {text.strip()[:200]!r}")
    try:
        doc, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise TelemetryUnavailableError(f"amd-smi printed invalid JSON ({exc}): {text.strip()[:200]!r}") from exc
    gpus = _amd_gpu_list(doc)
    if gpus is None:
        raise TelemetryUnavailableError(f"unexpected amd-smi JSON: {json.dumps(doc)[:200]}")
    samples: list[GpuSample] = []
    for gpu in gpus:
        index = gpu.get("gpu") if isinstance(gpu, dict) else None
        if isinstance(index, bool) or not isinstance(index, int | str) or not str(index).strip().isdigit():
            raise TelemetryUnavailableError(f"amd-smi entry without a GPU index: {json.dumps(gpu)[:200]}")
        values: dict[str, float | None] = {}
        reasons: dict[str, str] = {}
        for attr in METRIC_FIELDS:
            v, why = _amd_gfx_clock(gpu) if attr == "sm_clock_mhz" else _amd_field(gpu, attr)
            values[attr] = v
            if v is None:
                reasons[attr] = why or "amd-smi reported no value"
        samples.append(GpuSample(
            t=t, gpu=int(index), source=source, null_reasons=reasons, power_w=values["power_w"],
            temperature_c=values["temperature_c"], sm_clock_mhz=values["sm_clock_mhz"],
            mem_clock_mhz=values["mem_clock_mhz"], utilization_pct=values["utilization_pct"],
            memory_used_mib=values["memory_used_mib"],
        ))
    if not samples:
        raise TelemetryUnavailableError("amd-smi printed no GPUs")
    return samples


def _host_runner(tool: str, timeout_s: float) -> Callable[[Sequence[str]], tuple[int, str]]:
    """Runs argv on this host: 127 when `tool` is missing, 124 on timeout."""

    def run(argv: Sequence[str]) -> tuple[int, str]:
        try:
            p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
        except FileNotFoundError:
            return 127, f"{tool} not found on this host"
        except subprocess.TimeoutExpired:
            return 124, f"{tool} did not answer within {timeout_s} s"
        return p.returncode, p.stdout if p.returncode == 0 else (p.stderr or p.stdout)

    return run


def _container_runner(client: docker.DockerClient, container_id: str) -> Callable[[Sequence[str]], tuple[int, str]]:
    """Execs argv in a container (the client's timeout bounds it)."""
    import docker.errors

    def run(argv: Sequence[str]) -> tuple[int, str]:
        try:
            res = client.api.exec_create(container_id, list(argv), stdout=True, stderr=True)
            out = client.api.exec_start(res["Id"])
            code = client.api.exec_inspect(res["Id"]).get("ExitCode")
        except docker.errors.APIError as exc:
            # e.g. 'exec: "nvidia-smi": executable file not found in $PATH' (no NVIDIA runtime, no ROCm tools)
            return 126, str(getattr(exc, "explanation", None) or exc)
        text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
        return (int(code) if code is not None else 1), text

    return run


class AmdSmiSource(_SmiSource):
    """amd-smi's JSON metrics of every GPU: the AMD twin of NvidiaSmiSource (ROCm images ship amd-smi)."""

    TOOL = "amd-smi"
    CMD = AMD_SMI_CMD

    def parse(self, out: str, t: float) -> list[GpuSample]:
        return parse_amd_smi_json(out, t, source=self.name)


def runner_vendor(runner: str | None) -> str:
    """`amd` or `nvidia` for a runner label (`gpu_for_runner(..).vendor`); unknown or no label → nvidia."""
    if not runner:
        return "nvidia"
    from infersweep.recipes.hardware import gpu_for_runner

    spec = gpu_for_runner(runner)
    return spec.vendor if spec else "nvidia"


# -----------------------------------------------------------------------------------------------------------
# simulator
# -----------------------------------------------------------------------------------------------------------
_PROM_LINE = re.compile(r'^(?P<name>sim:gpu_[a-z_]+)\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)')
_SIM_FIELDS = {
    "sim:gpu_power_watts": ("power_w", 1.0),
    "sim:gpu_utilization_perc": ("utilization_pct", 100.0),  # the gauge is a 0..1 fraction
    "sim:gpu_memory_used_bytes": ("memory_used_mib", 1.0 / (1024 * 1024)),
}
SIM_NOT_MODELLED = "not modelled by the simulated engine"


def parse_sim_metrics(text: str, t: float) -> list[GpuSample]:
    """The simulator's modelled GPU gauges (labelled simulated); temperature and clocks are not modelled."""
    per_gpu: dict[int, dict[str, float]] = {}
    for line in text.splitlines():
        m = _PROM_LINE.match(line)
        if m is None or m["name"] not in _SIM_FIELDS:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
        if "gpu" not in labels:
            continue
        attr, scale = _SIM_FIELDS[m["name"]]
        per_gpu.setdefault(int(labels["gpu"]), {})[attr] = float(m["value"]) * scale
    if not per_gpu:
        raise TelemetryUnavailableError("the simulator's /metrics has no sim:gpu_* gauges")
    out = []
    for gpu, values in sorted(per_gpu.items()):
        reasons = {f: SIM_NOT_MODELLED for f in METRIC_FIELDS if f not in values}
        out.append(GpuSample(t=t, gpu=gpu, source="sim-model", simulated=True, null_reasons=reasons, **values))
    return out


class SimMetricsSource:
    """Scrapes the simulated engine's Prometheus text: `/metrics`, or `/prometheus/metrics` where the
    simulated server is TensorRT-LLM-flavoured (its `/metrics` is JSON iteration stats, as trtllm-serve's)."""

    name = "sim-model"
    PATHS = ("/metrics", "/prometheus/metrics")

    def __init__(self, base_url: str, *, timeout_s: float = 2.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + self.PATHS[0]
        self.timeout_s = timeout_s

    def read(self, t: float) -> list[GpuSample]:
        problems: list[str] = []
        # The path that answered last time first: one request per sample in the steady state.
        for url in dict.fromkeys([self.url, *(self.base_url + p for p in self.PATHS)]):
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as resp:  # noqa: S310 (our own URL)
                    text = resp.read().decode()
                samples = parse_sim_metrics(text, t)
            except OSError as exc:
                problems.append(f"GET {url} failed: {exc}")
                continue
            except TelemetryUnavailableError as exc:
                problems.append(f"{url}: {exc}")
                continue
            self.url = url
            return samples
        raise TelemetryUnavailableError("; ".join(problems))


class NoTelemetry:
    """A source that can never be read (e.g. a backend without GPUs); every sample is null with `reason`."""

    name = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def read(self, t: float) -> list[GpuSample]:
        raise TelemetryUnavailableError(self.reason)


# -----------------------------------------------------------------------------------------------------------
# sampler
# -----------------------------------------------------------------------------------------------------------
class TelemetrySampler:
    """Reads `source` every `interval_s` on a daemon thread; use as a context manager around serving.

    A failed read adds null samples with the reason (for the GPUs seen so far), so gaps are visible in the
    stored series rather than silently missing.
    """

    def __init__(self, source: TelemetrySource, *, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.time, max_samples: int = 500_000) -> None:
        self.source = source
        self.interval_s = interval_s
        self._clock = clock
        self._samples: list[GpuSample] = []
        self._gpus: list[int] = []
        self._lock = threading.Condition()
        self._latest_t: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.max_samples = max_samples

    def sample_once(self) -> list[GpuSample]:
        """One read (stamped with the clock), appended to the series and returned."""
        t = self._clock()
        try:
            got = self.source.read(t)
            self._gpus = sorted({s.gpu for s in got})
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            got = unavailable(t, self.source.name, reason, self._gpus or (ALL_GPUS,),
                              simulated=isinstance(self.source, SimMetricsSource))
        with self._lock:
            if len(self._samples) < self.max_samples:
                self._samples.extend(got)
            self._latest_t = t if self._latest_t is None else max(self._latest_t, t)
            self._lock.notify_all()
        return got

    def wait_for_sample_after(self, t: float, timeout_s: float) -> bool:
        """Block until a read stamped at or after `t` exists (True) or `timeout_s` has passed (False).

        A benchmark window is only integrable once a reading closes it (InferenceX requires readings on both
        sides of the window), so a caller waits for the next tick after its window ends.
        """
        with self._lock:
            return self._lock.wait_for(lambda: self._latest_t is not None and self._latest_t >= t, timeout=timeout_s)

    def start(self) -> TelemetrySampler:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name=f"telemetry-{self.source.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> list[GpuSample]:
        """Stop sampling (and close the source if it has `close`); returns the whole series."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval_s + 10)
            self._thread = None
        close = getattr(self.source, "close", None)
        if callable(close):
            close()
        return self.samples

    @property
    def samples(self) -> list[GpuSample]:
        with self._lock:
            return list(self._samples)

    def _loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.sample_once()
            next_t += self.interval_s
            # Fixed-rate schedule; after a slow read skip missed ticks rather than bursting.
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t = time.monotonic()
                delay = 0
            self._stop.wait(delay)

    def __enter__(self) -> TelemetrySampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def source_for(handle: Any, *, docker_client: docker.DockerClient | None = None,
               runner: str | None = None) -> TelemetrySource:
    """The right source for a started server (`ServerHandle`): sim → /metrics, docker → exec, process → host.

    The tool is the runner's vendor's: amd-smi for AMD runners (`runner_vendor(runner) == "amd"`: mi300x,
    mi325x, mi355x), nvidia-smi otherwise (and when no runner is given).
    For Docker without `docker_client`, a client for the handle's engine URL is made and closed on `stop()`.
    """
    backend = str(getattr(handle, "backend", ""))
    if backend.startswith("sim"):
        return SimMetricsSource(handle.base_url)
    smi: type[NvidiaSmiSource] | type[AmdSmiSource] = (
        AmdSmiSource if runner_vendor(runner) == "amd" else NvidiaSmiSource)
    if "docker" in backend:
        if docker_client is not None:
            return smi.in_container(docker_client, handle.id)
        import docker

        url = (getattr(handle, "extra", None) or {}).get("docker_url")
        try:
            client = docker.DockerClient(base_url=url, timeout=30) if url else docker.from_env(timeout=30)
        except docker.errors.DockerException as exc:
            return NoTelemetry(f"Docker engine {url or 'DOCKER_HOST'} unreachable: {exc}")
        return smi.in_container(client, handle.id, owns_client=True)
    if backend.startswith(("process", "vllm-process", "local")):
        return smi.local()
    return NoTelemetry(f"no telemetry source for backend {backend!r}")


# -----------------------------------------------------------------------------------------------------------
# energy: InferenceX's `utils/aggregate_power.py` method
# -----------------------------------------------------------------------------------------------------------
#: InferenceX's longest allowed gap between two power readings of one GPU; readings further than this outside
#: the window are not looked at (so an unreadable one there does not invalidate it).
MAX_SAMPLE_GAP_S = 3.0
INTEGRATION_METHOD = "per_device_trapezoidal_with_linear_boundary_interpolation"


@dataclass(frozen=True)
class EnergyWindow:
    """Energy over one benchmark window, integrated per GPU exactly as InferenceX's `aggregate_power.py`.

    Every figure is None, with `reason` and InferenceX's reason codes in `invalid_reasons`, unless each GPU's
    readings bracket the window with no gap over `max_sample_gap_s` and every reading near it is readable
    (with no output tokens, energy and power stand and only the per-token figures are None). `avg_power_w` is the summed power of all GPUs (InferenceX: `avg_total_gpu_power_w`); InferenceX's own
    `avg_power_w` (per GPU) is `avg_power_per_gpu_w`. `per_gpu_*` are kept for audit even when invalid.
    """

    energy_j: float | None
    avg_power_w: float | None
    joules_per_token: float | None
    tokens_per_s_per_mw: float | None
    gpus: int
    simulated: bool
    reason: str | None = None
    avg_power_per_gpu_w: float | None = None
    invalid_reasons: tuple[str, ...] = ()
    per_gpu_energy_j: dict[str, float] = field(default_factory=dict)
    per_gpu_max_sample_gap_s: dict[str, float] = field(default_factory=dict)
    start_unix: float | None = None
    end_unix: float | None = None
    max_sample_gap_s: float = MAX_SAMPLE_GAP_S
    method: str = INTEGRATION_METHOD


def _power_at(series: Sequence[tuple[float, float]], t: float) -> float:
    """Power at `t` by linear interpolation between the bracketing readings (a reading at `t` wins)."""
    times = [ts for ts, _ in series]
    right = bisect.bisect_left(times, t)
    if right < len(series) and math.isclose(series[right][0], t, rel_tol=0.0, abs_tol=1e-9):
        return series[right][1]
    if right == 0 or right == len(series):
        raise ValueError(f"{t} is outside the readings ({series[0][0]} .. {series[-1][0]}): not extrapolated")
    (ta, pa), (tb, pb) = series[right - 1], series[right]
    return pa + (t - ta) / (tb - ta) * (pb - pa)


def _integrate_device(series: Sequence[tuple[float, float]], t0: float, t1: float) -> float:
    """Trapezoids over [t0, t1] through the readings inside it, the ends interpolated."""
    points = [(t0, _power_at(series, t0)), *((t, p) for t, p in series if t0 < t < t1), (t1, _power_at(series, t1))]
    return sum((tb - ta) * (pa + pb) / 2.0 for (ta, pa), (tb, pb) in pairwise(points))


def _device_series(samples: Iterable[GpuSample], t0: float, t1: float, max_gap_s: float,
                   note: Callable[[str, str], None]) -> dict[int, list[tuple[float, float]]]:
    """Readable (t, W) per GPU within `max_gap_s` of the window, sorted; equal timestamps averaged."""
    raw: dict[int, dict[float, list[float]]] = {}
    for s in samples:
        if not math.isfinite(s.t):
            note("invalid_timestamp_sample", f"a reading has a non-finite timestamp ({s.t})")
            continue
        if s.t < t0 - max_gap_s or s.t > t1 + max_gap_s:
            continue
        p = s.power_w
        if p is None or not math.isfinite(p) or p < 0:
            why = s.null_reasons.get("power_w") or f"{p} W"
            gpu = "" if s.gpu == ALL_GPUS else f"GPU {s.gpu} "
            note("invalid_power_sample", f"{gpu}power unreadable at {s.t:.3f} ({why})")
            continue
        raw.setdefault(s.gpu, {}).setdefault(s.t, []).append(p)
    # statistics.mean, as InferenceX, so duplicate readings average to the same float
    return {g: sorted((t, v[0] if len(v) == 1 else statistics.mean(v)) for t, v in by_t.items())
            for g, by_t in raw.items()}


def energy_window(samples: Iterable[GpuSample], t0: float, t1: float, output_tokens: int, *,
                  expected_gpus: int | None = None, max_gap_s: float = MAX_SAMPLE_GAP_S) -> EnergyWindow:
    """Integrate GPU power over [t0, t1] (unix seconds) → energy, J/output token and average power.

    InferenceX's rules: each GPU is integrated on its own (trapezoids through its readings, linearly
    interpolated at both window ends) and the energies summed. The window is invalid when a reading within
    `max_gap_s` of it is unreadable, a GPU has fewer than 2 readings or none at/before `t0` or at/after `t1`,
    two consecutive readings that span part of the window are more than `max_gap_s` apart, or the GPU count
    differs from `expected_gpus` (when given).
    """
    samples = list(samples)
    simulated = any(s.simulated for s in samples)
    span: dict[str, Any] = {"start_unix": t0 if math.isfinite(t0) else None,
                            "end_unix": t1 if math.isfinite(t1) else None, "max_sample_gap_s": max_gap_s}
    problems: dict[str, str] = {}  # InferenceX reason code → first detail, in discovery order
    per_gpu_energy: dict[str, float] = {}
    per_gpu_gap: dict[str, float] = {}

    def note(code: str, detail: str) -> None:
        problems.setdefault(code, detail)

    def invalid(gpus: int = 0) -> EnergyWindow:
        return EnergyWindow(None, None, None, None, gpus, simulated, "; ".join(problems.values()),
                            invalid_reasons=tuple(problems), per_gpu_energy_j=per_gpu_energy,
                            per_gpu_max_sample_gap_s=per_gpu_gap, **span)

    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 <= t0:
        note("invalid_benchmark_window", f"empty or unknown benchmark window ({t0} .. {t1})")
        return invalid()
    if not math.isfinite(max_gap_s) or max_gap_s <= 0:
        note("invalid_max_sample_gap", f"max sample gap must be > 0 s, got {max_gap_s}")
        return invalid()
    if expected_gpus is not None and expected_gpus <= 0:
        note("invalid_expected_gpu_count", f"expected GPU count must be ≥ 1, got {expected_gpus}")
    series = _device_series(samples, t0, t1, max_gap_s, note)
    if not series:
        note("no_usable_power_samples", f"no readable power sample within {max_gap_s:g} s of the window")
        return invalid()
    gpus = sorted(series)
    if expected_gpus is not None and expected_gpus > 0 and len(gpus) != expected_gpus:
        note("expected_gpu_count_mismatch",
             f"telemetry shows {len(gpus)} GPUs {gpus}, the server uses {expected_gpus}")
    for g in gpus:
        dev = series[g]
        if len(dev) < 2:
            note("insufficient_power_samples", f"GPU {g} has {len(dev)} reading within {max_gap_s:g} s of the window")
            continue
        if dev[0][0] > t0 or dev[-1][0] < t1:
            note("benchmark_window_not_bracketed", f"GPU {g} readings span {dev[0][0]:.3f} .. {dev[-1][0]:.3f}, "
                                                   f"not the whole window {t0:.3f} .. {t1:.3f}")
            continue
        times = [t for t, _ in dev]
        around = dev[bisect.bisect_right(times, t0) - 1 : bisect.bisect_left(times, t1) + 1]
        gap = max((tb - ta for (ta, _), (tb, _) in pairwise(around)), default=0.0)
        per_gpu_gap[str(g)] = gap
        if gap > max_gap_s:
            note("sampling_gap_exceeded",
                 f"GPU {g} has {gap:.1f} s between power readings in the window (max {max_gap_s:g} s)")
        per_gpu_energy[str(g)] = _integrate_device(dev, t0, t1)
    if problems:
        return invalid(len(gpus))
    energy = sum(per_gpu_energy.values())
    duration = t1 - t0
    avg = energy / duration
    if output_tokens <= 0:  # energy and power stand; per-token figures do not exist
        return EnergyWindow(energy, avg, None, None, len(gpus), simulated, "no output tokens in the window",
                            avg_power_per_gpu_w=avg / len(gpus), invalid_reasons=("invalid_output_token_count",),
                            per_gpu_energy_j=per_gpu_energy, per_gpu_max_sample_gap_s=per_gpu_gap, **span)
    tok_per_mw = (output_tokens / duration) / (avg / 1e6) if avg > 0 else None
    return EnergyWindow(energy, avg, energy / output_tokens, tok_per_mw, len(gpus), simulated,
                        avg_power_per_gpu_w=avg / len(gpus), per_gpu_energy_j=per_gpu_energy,
                        per_gpu_max_sample_gap_s=per_gpu_gap, **span)


def energy_per_token(samples: Iterable[GpuSample], t0: float, t1: float,
                     output_tokens: int) -> tuple[float | None, float | None]:
    """(joules per output token, average summed GPU power in W) over [t0, t1]; None where unreadable."""
    w = energy_window(samples, t0, t1, output_tokens)
    return w.joules_per_token, w.avg_power_w
