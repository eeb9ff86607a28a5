"""GPU telemetry while a serve group runs: one sample per GPU per second, and energy per output token.

Sources:
- Docker: `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` exec'd in the serving container (the
  NVIDIA runtime mounts nvidia-smi into it), so the figures are exactly the GPUs the server was given;
- local process: the same command on the host;
- simulator: its `/metrics` `sim:gpu_*` gauges, modelled not measured, so every sample says `simulated=True`.

A field that cannot be read is None with a reason in `null_reasons` — never 0, because a 0 W reading would
silently turn into "free" tokens in energy per token.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Protocol

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


class TelemetryUnavailableError(RuntimeError):
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


class NvidiaSmiSource:
    """nvidia-smi through a runner: `run(argv) -> (exit_code, output)`."""

    def __init__(self, run: Callable[[Sequence[str]], tuple[int, str]], *, name: str = "nvidia-smi",
                 on_close: Callable[[], None] | None = None) -> None:
        self._run = run
        self.name = name
        self._on_close = on_close

    def close(self) -> None:
        """Release what the runner holds (e.g. a Docker client this source created)."""
        if self._on_close is not None:
            self._on_close()
            self._on_close = None

    def read(self, t: float) -> list[GpuSample]:
        code, out = self._run(NVIDIA_SMI_CMD)
        if code != 0:
            raise TelemetryUnavailableError(f"nvidia-smi exited {code}: {out.strip()[:200]}")
        return parse_nvidia_smi_csv(out, t, source=self.name)

    @classmethod
    def local(cls, *, timeout_s: float = 5.0) -> NvidiaSmiSource:
        """nvidia-smi on this host (local-process backend)."""

        def run(argv: Sequence[str]) -> tuple[int, str]:
            try:
                p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
            except FileNotFoundError:
                return 127, "nvidia-smi not found on this host"
            except subprocess.TimeoutExpired:
                return 124, f"nvidia-smi did not answer within {timeout_s} s"
            return p.returncode, p.stdout if p.returncode == 0 else (p.stderr or p.stdout)

        return cls(run, name="nvidia-smi")

    @classmethod
    def in_container(cls, client: docker.DockerClient, container_id: str, *,
                     owns_client: bool = False) -> NvidiaSmiSource:
        """nvidia-smi exec'd inside the serving container (its client's timeout bounds each call)."""
        import docker.errors

        def run(argv: Sequence[str]) -> tuple[int, str]:
            try:
                res = client.api.exec_create(container_id, list(argv), stdout=True, stderr=True)
                out = client.api.exec_start(res["Id"])
                code = client.api.exec_inspect(res["Id"]).get("ExitCode")
            except docker.errors.APIError as exc:
                # e.g. 'exec: "nvidia-smi": executable file not found in $PATH' (no NVIDIA runtime)
                return 126, str(getattr(exc, "explanation", None) or exc)
            text = out.decode(errors="replace") if isinstance(out, bytes) else str(out)
            return (int(code) if code is not None else 1), text

        return cls(run, name="nvidia-smi (docker exec)", on_close=client.close if owns_client else None)


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
    """Scrapes the simulated engine's /metrics."""

    name = "sim-model"

    def __init__(self, base_url: str, *, timeout_s: float = 2.0) -> None:
        self.url = base_url.rstrip("/") + "/metrics"
        self.timeout_s = timeout_s

    def read(self, t: float) -> list[GpuSample]:
        try:
            with urllib.request.urlopen(self.url, timeout=self.timeout_s) as resp:  # noqa: S310 (our own URL)
                text = resp.read().decode()
        except OSError as exc:
            raise TelemetryUnavailableError(f"GET {self.url} failed: {exc}") from exc
        return parse_sim_metrics(text, t)


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
        self._lock = threading.Lock()
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
        return got

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


def source_for(handle: Any, *, docker_client: docker.DockerClient | None = None) -> TelemetrySource:
    """The right source for a started server (`ServerHandle`): sim → /metrics, docker → exec, process → host.

    For Docker without `docker_client`, a client for the handle's engine URL is made and closed on `stop()`.
    """
    backend = str(getattr(handle, "backend", ""))
    if backend.startswith("sim"):
        return SimMetricsSource(handle.base_url)
    if "docker" in backend:
        if docker_client is not None:
            return NvidiaSmiSource.in_container(docker_client, handle.id)
        import docker

        url = (getattr(handle, "extra", None) or {}).get("docker_url")
        try:
            client = docker.DockerClient(base_url=url, timeout=30) if url else docker.from_env(timeout=30)
        except docker.errors.DockerException as exc:
            return NoTelemetry(f"Docker engine {url or 'DOCKER_HOST'} unreachable: {exc}")
        return NvidiaSmiSource.in_container(client, handle.id, owns_client=True)
    if backend.startswith(("process", "vllm-process", "local")):
        return NvidiaSmiSource.local()
    return NoTelemetry(f"no telemetry source for backend {backend!r}")


# -----------------------------------------------------------------------------------------------------------
# energy
# -----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnergyWindow:
    """Energy over one benchmark window; all None with `reason` when power was not readable throughout."""

    energy_j: float | None
    avg_power_w: float | None
    joules_per_token: float | None
    tokens_per_s_per_mw: float | None
    gpus: int
    simulated: bool
    reason: str | None = None


def _node_power_series(samples: Iterable[GpuSample]) -> tuple[list[tuple[float, float | None]], int, bool]:
    """[(t, summed power or None)] per read; a read where any GPU lacks power is None (a partial sum lies)."""
    rounds: dict[float, list[GpuSample]] = {}
    simulated = False
    for s in samples:
        rounds.setdefault(s.t, []).append(s)
        simulated = simulated or s.simulated
    gpus = max((len({s.gpu for s in r if s.gpu != ALL_GPUS}) for r in rounds.values()), default=0)
    series: list[tuple[float, float | None]] = []
    for t in sorted(rounds):
        r = rounds[t]
        ok = all(s.power_w is not None for s in r) and len(r) >= gpus and all(s.gpu != ALL_GPUS for s in r)
        series.append((t, sum(s.power_w for s in r if s.power_w is not None) if ok else None))
    return series, gpus, simulated


def energy_window(samples: Iterable[GpuSample], t0: float, t1: float, output_tokens: int, *,
                  max_gap_s: float = 5.0) -> EnergyWindow:
    """Integrate summed GPU power over [t0, t1] (trapezoids, linear between reads) → J/token and avg W.

    The window must be covered: a read within `max_gap_s` of both ends and no gap longer than that inside
    (an unreadable read counts as a gap). Otherwise every figure is None with the reason.
    """
    series, gpus, simulated = _node_power_series(samples)

    def fail(reason: str) -> EnergyWindow:
        return EnergyWindow(None, None, None, None, gpus, simulated, reason)

    if t1 <= t0:
        return fail(f"empty window ({t0} .. {t1})")
    good = [(t, p) for t, p in series if p is not None]
    if not good:
        return fail("no readable power samples" if not series else "power was not readable in any sample")
    inside = [(t, p) for t, p in good if t0 - max_gap_s <= t <= t1 + max_gap_s]
    if not inside or inside[0][0] > t0 + max_gap_s or inside[-1][0] < t1 - max_gap_s:
        return fail(f"power samples do not cover the window {t0:.3f} .. {t1:.3f}")
    for (ta, _), (tb, _) in pairwise(inside):
        if tb - ta > max_gap_s and tb > t0 and ta < t1:
            return fail(f"power readings missing for {tb - ta:.1f} s inside the window")

    def power_at(t: float) -> float:
        if t <= inside[0][0]:
            return inside[0][1]
        if t >= inside[-1][0]:
            return inside[-1][1]
        for (ta, pa), (tb, pb) in pairwise(inside):
            if ta <= t <= tb:
                return pa + (pb - pa) * (t - ta) / (tb - ta) if tb > ta else pa
        raise AssertionError("unreachable")  # pragma: no cover

    points = [(t0, power_at(t0)), *[(t, p) for t, p in inside if t0 < t < t1], (t1, power_at(t1))]
    energy = sum((tb - ta) * (pa + pb) / 2 for (ta, pa), (tb, pb) in pairwise(points))
    duration = t1 - t0
    avg = energy / duration
    jpt = energy / output_tokens if output_tokens > 0 else None
    tok_per_mw = (output_tokens / duration) / (avg / 1e6) if avg > 0 and output_tokens > 0 else None
    return EnergyWindow(energy, avg, jpt, tok_per_mw, gpus, simulated,
                        None if output_tokens > 0 else "no output tokens in the window")


def energy_per_token(samples: Iterable[GpuSample], t0: float, t1: float,
                     output_tokens: int) -> tuple[float | None, float | None]:
    """(joules per output token, average summed GPU power in W) over [t0, t1]; None where unreadable."""
    w = energy_window(samples, t0, t1, output_tokens)
    return w.joules_per_token, w.avg_power_w
