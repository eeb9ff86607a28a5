"""Seeded run-to-run and per-step noise for the simulated engine.

A real GPU server does not repeat itself: clocks, temperature, co-tenants and the host make one benchmark
run a few percent faster or slower than the next, and individual steps jitter. The simulator models both
as a multiplier on every step's modelled time:

    step time = roofline time × R(t) × S

- `R(t)`, the **run factor**, is log-normal with mean 1 and relative standard deviation `run_sigma`. Its
  logarithm follows an Ornstein–Uhlenbeck process in *simulated* time with correlation time `tau_s`, so
  it drifts slowly: one benchmark run (shorter than `tau_s`) mostly sees one factor, two runs one after the
  other on the same server see different ones, and the correlation between times `dt` apart is
  `exp(-dt / tau_s)` on the log scale. The process starts in its stationary distribution, so the first
  run on a fresh server is as noisy as any later one.
- `S`, the **step jitter**, is i.i.d. log-normal per step with mean 1 and relative standard deviation
  `step_sigma` (launch gaps, host scheduling). Over thousands of steps it averages out of throughput and
  medians; it shows in per-token gaps.

Mean step time is unchanged (E[R] = E[S] = 1); a throughput, being its reciprocal, is larger by a factor
`1 + run_sigma²` in expectation (0.09 % at 3 %), which is far below anything measured. Both sigmas at 0
disable the model: the scheduler then never calls it, so results are bit-identical to the noiseless
simulator.

The path is reproducible: the same `NoiseModel` (seed) and the same sequence of step start times give the
same multipliers. The run factor and the step jitter draw from separate streams, so changing `step_sigma`
does not change the run factor's path.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

#: Default correlation time of the run factor (simulated seconds): a benchmark point of a few hundred
#: requests at low concurrency lasts about this long.
DEFAULT_TAU_S = 30.0
#: Sigmas above this are not "noise" any more (a 50 % run-to-run spread is a broken machine).
MAX_SIGMA = 0.5


def _log_sigma(rel_sigma: float) -> float:
    """σ of log X for a log-normal X with mean 1 and relative standard deviation `rel_sigma`."""
    return math.sqrt(math.log1p(rel_sigma * rel_sigma))


@dataclass(frozen=True)
class NoiseModel:
    """Noise settings: relative σ of the slow run factor and of the per-step jitter, the seed, and the run
    factor's correlation time in simulated seconds. Immutable; `sampler()` gives the stateful path."""

    run_sigma: float = 0.0
    step_sigma: float = 0.0
    seed: int = 0
    tau_s: float = DEFAULT_TAU_S

    def __post_init__(self) -> None:
        for name in ("run_sigma", "step_sigma"):
            value = getattr(self, name)
            if not (0.0 <= value <= MAX_SIGMA):
                raise ValueError(f"NoiseModel.{name} must be in [0, {MAX_SIGMA}], got {value}")
        if not (self.tau_s > 0 and math.isfinite(self.tau_s)):
            raise ValueError(f"NoiseModel.tau_s must be a positive number of seconds, got {self.tau_s}")

    @property
    def enabled(self) -> bool:
        """False when both sigmas are 0 (the simulator then skips the model entirely)."""
        return self.run_sigma > 0 or self.step_sigma > 0

    def sampler(self) -> NoiseSampler:
        """A fresh noise path from this model's seed (each call starts the same path again)."""
        return NoiseSampler(self)

    def multipliers(self, times: list[float]) -> list[float]:
        """The step multipliers at non-decreasing simulated `times` on a fresh path (tests, plots)."""
        s = self.sampler()
        return [s.multiplier(t) for t in times]


class NoiseSampler:
    """One noise path: call `multiplier(t)` for each step, with non-decreasing simulated times `t`."""

    __slots__ = ("_a_tau", "_model", "_run", "_run_ls", "_run_shift", "_step", "_step_ls", "_step_shift",
                 "_t", "_x")

    def __init__(self, model: NoiseModel) -> None:
        self._model = model
        # Separate streams: the run factor's path does not depend on step_sigma (and vice versa).
        self._run = random.Random(f"infersweep-sim-noise-run-{model.seed}")
        self._step = random.Random(f"infersweep-sim-noise-step-{model.seed}")
        self._run_ls = _log_sigma(model.run_sigma)
        self._step_ls = _log_sigma(model.step_sigma)
        # exp(σZ − σ²/2) has mean 1 for Z ~ N(0, 1).
        self._run_shift = self._run_ls * self._run_ls / 2.0
        self._step_shift = self._step_ls * self._step_ls / 2.0
        self._a_tau = 1.0 / model.tau_s
        self._x = self._run.gauss(0.0, 1.0) if model.run_sigma > 0 else 0.0  # stationary start
        self._t: float | None = None

    @property
    def model(self) -> NoiseModel:
        """The settings this path was drawn from."""
        return self._model

    def run_factor(self, t: float) -> float:
        """The slow factor R(t), advancing the Ornstein–Uhlenbeck state to `t` (an earlier `t` than the
        last call is treated as the last time: the path never runs backwards)."""
        if self._run_ls == 0.0:
            return 1.0
        if self._t is None:
            self._t = t
        elif t > self._t:
            # Exact OU transition over dt: x' = a·x + sqrt(1 − a²)·N(0, 1), a = exp(−dt/τ).
            a = math.exp((self._t - t) * self._a_tau)
            self._x = a * self._x + math.sqrt(1.0 - a * a) * self._run.gauss(0.0, 1.0)
            self._t = t
        return math.exp(self._run_ls * self._x - self._run_shift)

    def multiplier(self, t: float) -> float:
        """The multiplier of a step starting at simulated time `t`: R(t) × a fresh jitter draw."""
        f = self.run_factor(t)
        if self._step_ls > 0.0:
            f *= math.exp(self._step_ls * self._step.gauss(0.0, 1.0) - self._step_shift)
        return f
