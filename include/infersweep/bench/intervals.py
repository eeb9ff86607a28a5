"""Confidence intervals for a point's headline metrics: within one run, across repeated runs, combined.

Two sources of uncertainty, two methods:

- **Within a run** (`point_intervals`): a nonparametric percentile bootstrap over the run's successful
  requests. It answers "how much would this number move if the run had drawn a different sample of
  requests from the same server in the same state?". It cannot see anything that is constant over the run:
  a server that is 3 % slow for the whole run (clocks, thermals, a noisy neighbour) moves every request
  alike, and resampling requests never reveals it. Use it as the interval of a point measured once, and
  read it as a lower bound on the real uncertainty: perf/ci_coverage.py measures 6–77 % coverage for a
  nominal 95 % with 3 % run noise, and even without run noise the requests of a closed-loop run are not
  independent (shared batches, admission waves, the drain tail), so some metrics undercover (p99 TTFT of a
  few hundred requests is not covered at all). docs/performance.md, "Confidence intervals: coverage".
- **Across runs** (`repeat_intervals`): a Student-t interval on the per-run values of n ≥ 2 repeats. It
  contains all noise that differs between runs, including the run-level factor, and is exact when the
  run-to-run spread is normal (measured: 93.0–97.3 % coverage for every metric with n = 3 and 5). A
  percentile bootstrap over 3–5 values would undercover badly (its interval can never be wider than the
  sample range), so it is not used there.

`combine_repeats` gives, per metric, the mean over repeats and the across-runs interval when there are
two or more runs, else the within-run bootstrap one.

Metric definitions match the store's columns (`store.metrics.point_columns` over the client's
`bench.metrics`): latencies over successful requests in ms with numpy's linear percentiles,
TPOT = (E2EL − TTFT)/(output tokens − 1) per request with more than one output token, interactivity =
1000 / median TPOT (tok/s/user, InferenceX), throughputs per GPU = tokens of successful requests / run
duration / GPUs (total = input + output tokens).

Throughput's bootstrap. A throughput is not a mean over requests: it is tokens over wall time, and the
wall time of a closed-loop run (`--max-concurrency C`) is the requests' busy time shared by C slots. So a
resample's duration is scaled with its busy time (the sum of its requests' E2EL):

    T*_b = T̂ · (Σ_b tokens / Σ_b E2EL) / (Σ tokens / Σ E2EL)

i.e. the bootstrap of a ratio estimator, tokens per request-second, times the run's measured mean
occupancy (Σ E2EL / duration), which is held fixed. A resample with more long requests takes longer, as it
would on the server. Open-loop runs (a request rate) are treated the same way; their throughput is set by
the offered rate, so the interval is then an interval at that occupancy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

#: The headline metrics that get intervals (store column names).
INTERVAL_METRICS: tuple[str, ...] = (
    "tput_per_gpu", "output_tput_per_gpu", "median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "median_intvty",
    "median_e2el_ms",
)
METHOD_BOOTSTRAP = "bootstrap-percentile"
METHOD_STUDENT_T = "student-t"
#: Resampled rows computed at once: bounds memory (rows × requests × 8 bytes per array) for large runs.
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval [lo, hi] at `level` (0.95), how it was made and from how many
    samples (`n`: requests for a bootstrap, runs for a Student-t interval)."""

    lo: float
    hi: float
    level: float
    method: str
    n: int

    def __post_init__(self) -> None:
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"Interval.level must be in (0, 1), got {self.level}")
        if self.hi < self.lo:
            raise ValueError(f"Interval: hi {self.hi} < lo {self.lo}")

    @property
    def mid(self) -> float:
        """The centre of the interval."""
        return (self.lo + self.hi) / 2.0

    @property
    def half_width(self) -> float:
        """Half the width of the interval."""
        return (self.hi - self.lo) / 2.0

    def contains(self, value: float) -> bool:
        """Whether `value` lies in [lo, hi]."""
        return self.lo <= value <= self.hi

    def critical_value(self) -> float:
        """The two-sided quantile the interval's half-width is a multiple of: Student-t with n − 1 degrees
        of freedom for across-runs intervals, the normal one otherwise."""
        p = (1.0 + self.level) / 2.0
        if self.method == METHOD_STUDENT_T and self.n >= 2:
            return t_ppf(p, self.n - 1)
        return NormalDist().inv_cdf(p)

    @property
    def std_error(self) -> float:
        """The standard error the interval implies (half-width over the critical value). For a percentile
        bootstrap this treats the interval as symmetric: an approximation, good for near-normal statistics."""
        return self.half_width / self.critical_value()

    @property
    def dof(self) -> float:
        """Degrees of freedom of the standard error (inf for a bootstrap over many requests)."""
        return float(self.n - 1) if self.method == METHOD_STUDENT_T and self.n >= 2 else math.inf

    def to_json(self) -> dict[str, Any]:
        """`{"lo", "hi", "level", "method", "n"}` (the store's `intervals` column per metric)."""
        return {"lo": self.lo, "hi": self.hi, "level": self.level, "method": self.method, "n": self.n}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Interval:
        """Inverse of `to_json` (raises ValueError/KeyError on a malformed mapping)."""
        return cls(lo=float(data["lo"]), hi=float(data["hi"]), level=float(data["level"]),
                   method=str(data["method"]), n=int(data["n"]))


# --- Student-t quantiles (numpy has none and scipy is not a dependency) -----------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes §6.4)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, dof: float) -> float:
    """CDF of Student's t with `dof` degrees of freedom (the normal CDF for infinite dof)."""
    if math.isinf(dof):
        return NormalDist().cdf(t)
    tail = 0.5 * _betai(dof / 2.0, 0.5, dof / (dof + t * t))
    return 1.0 - tail if t > 0 else tail


def t_ppf(p: float, dof: float) -> float:
    """Quantile of Student's t (bisection on `t_cdf`; exact to ~1e-10)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_ppf: p must be in (0, 1), got {p}")
    if dof <= 0:
        raise ValueError(f"t_ppf: dof must be > 0, got {dof}")
    if math.isinf(dof):
        return NormalDist().inv_cdf(p)
    if p < 0.5:
        return -t_ppf(1.0 - p, dof)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if t_cdf(mid, dof) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2.0


# --- one run's requests ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Requests:
    """The successful requests of one raw result, as arrays (seconds, tokens)."""

    ttft: np.ndarray
    e2el: np.ndarray
    tokens_total: np.ndarray
    tokens_out: np.ndarray
    duration: float

    @property
    def n(self) -> int:
        return int(self.ttft.size)


def _ok_mask(raw: Mapping[str, Any], n: int) -> np.ndarray:
    errors = raw.get("errors")
    if isinstance(errors, list) and len(errors) == n:
        return np.array([not e for e in errors], dtype=bool)
    return np.ones(n, dtype=bool)


def _requests(raw: Mapping[str, Any]) -> _Requests | None:
    """Successful requests of a raw client result; None when it holds no per-request lists."""
    lists: dict[str, list[Any]] = {}
    for key in ("input_lens", "output_lens", "ttfts", "latencies"):
        value = raw.get(key)
        if not isinstance(value, list):
            return None
        lists[key] = value
    n = min(len(v) for v in lists.values())
    ok = _ok_mask(raw, n)
    # None (a missing value) becomes NaN and the request is dropped below.
    arr: dict[str, np.ndarray] = {k: np.array(v[:n], dtype=np.float64) for k, v in lists.items()}
    # vLLM counts a request as completed when it had no error; a successful request streamed >= 1 token.
    ok &= arr["output_lens"] > 0
    ok &= np.isfinite(arr["ttfts"]) & np.isfinite(arr["latencies"])
    duration = raw.get("duration")
    dur = float(duration) if isinstance(duration, (int, float)) and not isinstance(duration, bool) else math.nan
    return _Requests(
        ttft=arr["ttfts"][ok], e2el=arr["latencies"][ok],
        tokens_total=arr["input_lens"][ok] + arr["output_lens"][ok], tokens_out=arr["output_lens"][ok],
        duration=dur,
    )


def _tpot(req: _Requests) -> np.ndarray:
    """Per-request TPOT (s) of requests with more than one output token."""
    multi = req.tokens_out > 1
    return (req.e2el[multi] - req.ttft[multi]) / (req.tokens_out[multi] - 1.0)


def point_values(raw: Mapping[str, Any], *, gpus: int) -> dict[str, float]:
    """The headline metrics of one raw result, as the store computes them (per-request lists when present,
    else the result's own scalars). Metrics without data are absent."""
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    out: dict[str, float] = {}
    req = _requests(raw)
    if req is None:
        for key, col in (("total_token_throughput", "tput_per_gpu"), ("output_throughput", "output_tput_per_gpu")):
            if isinstance(raw.get(key), (int, float)):
                out[col] = float(raw[key]) / gpus
        for key in ("median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "median_e2el_ms"):
            if isinstance(raw.get(key), (int, float)):
                out[key] = float(raw[key])
        if out.get("median_tpot_ms"):
            out["median_intvty"] = 1000.0 / out["median_tpot_ms"]
        return out
    if req.n and req.duration > 0:
        out["tput_per_gpu"] = float(req.tokens_total.sum()) / req.duration / gpus
        out["output_tput_per_gpu"] = float(req.tokens_out.sum()) / req.duration / gpus
    if req.n:
        out["median_ttft_ms"] = float(np.median(req.ttft)) * 1000.0
        out["p99_ttft_ms"] = float(np.percentile(req.ttft, 99)) * 1000.0
        out["median_e2el_ms"] = float(np.median(req.e2el)) * 1000.0
    tpot = _tpot(req)
    if tpot.size:
        med = float(np.median(tpot)) * 1000.0
        out["median_tpot_ms"] = med
        if med > 0:
            out["median_intvty"] = 1000.0 / med
    return out


def _quantiles(counts_sorted: np.ndarray, sorted_values: np.ndarray, qs: Sequence[float]) -> list[np.ndarray]:
    """numpy-linear quantiles `qs` of every resample (row), given how often each value was drawn, with the
    columns in ascending value order. Rows that drew nothing give NaN.

    The k-th smallest element of a resample (0-based) is the value at the first column where the running
    count exceeds k, i.e. at index #(running count <= k)."""
    cum = np.cumsum(counts_sorted, axis=1, dtype=np.int32)
    total = cum[:, -1]
    last = len(sorted_values) - 1
    out = []
    for q in qs:
        h = (total - 1) * q
        k_lo = np.floor(h)
        frac = h - k_lo
        k_hi = np.minimum(k_lo + 1, total - 1)
        i_lo = np.minimum((cum <= k_lo[:, None]).sum(axis=1), last)
        i_hi = np.minimum((cum <= k_hi[:, None]).sum(axis=1), last)
        v_lo, v_hi = sorted_values[i_lo], sorted_values[i_hi]
        out.append(np.where(total > 0, v_lo + frac * (v_hi - v_lo), np.nan))
    return out


def _percentile_interval(samples: np.ndarray, level: float, n: int) -> Interval | None:
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return Interval(lo=float(lo), hi=float(max(hi, lo)), level=level, method=METHOD_BOOTSTRAP, n=n)


def point_intervals(
    raw: Mapping[str, Any], *, gpus: int, level: float = 0.95, n_boot: int = 1000, seed: int = 0,
) -> dict[str, Interval]:
    """Within-run percentile-bootstrap intervals of the headline metrics of one raw client result.

    Resamples the run's successful requests with replacement `n_boot` times (failed requests carry no
    tokens and no latency in vLLM's result, so they are left out; the number of successes is held fixed).
    Throughput uses the busy-time ratio form of the module docstring. Deterministic for a given `seed`.

    Degenerate inputs give fewer metrics, never an exception: a metric is absent when fewer than two
    requests carry it (one request says nothing about spread; no successful request says nothing at all),
    and throughputs are absent without a positive `duration`. A result without per-request lists gives {}.

    The interval covers sampling noise between requests only; run-level noise (the whole run slow or fast)
    is invisible to it: see the module docstring, and `repeat_intervals` for repeated runs.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    req = _requests(raw)
    if req is None or req.n < 2:
        return {}
    rng = np.random.default_rng(seed)
    n = req.n
    multi = req.tokens_out > 1
    tpot = _tpot(req)
    n_tpot = int(tpot.size)
    have_tput = req.duration > 0 and float(req.e2el.sum()) > 0
    # Each statistic is read off the resample's multiplicities (how often each request was drawn), in the
    # order of the sorted values: no per-resample sort or partition, which keeps 1000 × 10k fast.
    ttft_order, e2el_order = np.argsort(req.ttft, kind="stable"), np.argsort(req.e2el, kind="stable")
    ttft_sorted, e2el_sorted = req.ttft[ttft_order], req.e2el[e2el_order]
    multi_idx = np.flatnonzero(multi)
    tpot_order = np.argsort(tpot, kind="stable")
    tpot_sorted, tpot_cols = tpot[tpot_order], multi_idx[tpot_order]
    cols: dict[str, list[np.ndarray]] = {m: [] for m in INTERVAL_METRICS}
    rows = max(1, min(n_boot, _CHUNK_ELEMENTS // n))
    done = 0
    while done < n_boot:
        b = min(rows, n_boot - done)
        done += b
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(np.int32)
        del idx
        q = _quantiles(counts[:, ttft_order], ttft_sorted, (0.5, 0.99))
        cols["median_ttft_ms"].append(q[0] * 1000.0)
        cols["p99_ttft_ms"].append(q[1] * 1000.0)
        cols["median_e2el_ms"].append(_quantiles(counts[:, e2el_order], e2el_sorted, (0.5,))[0] * 1000.0)
        if have_tput:
            # T*_b = (Σ_b tokens / Σ_b E2EL) · (Σ E2EL / duration) / gpus: resample's duration ∝ its busy time.
            cf = counts.astype(float)
            busy = cf @ req.e2el
            occ = float(req.e2el.sum()) / req.duration
            cols["tput_per_gpu"].append(cf @ req.tokens_total / busy * occ / gpus)
            cols["output_tput_per_gpu"].append(cf @ req.tokens_out / busy * occ / gpus)
            del cf
        if n_tpot >= 2:
            # Over each resample's multi-token requests only (their number varies between resamples).
            med_ms = _quantiles(counts[:, tpot_cols], tpot_sorted, (0.5,))[0] * 1000.0
            cols["median_tpot_ms"].append(med_ms)
            with np.errstate(divide="ignore", invalid="ignore"):
                cols["median_intvty"].append(np.where(med_ms > 0, 1000.0 / med_ms, np.nan))
    out: dict[str, Interval] = {}
    for name, parts in cols.items():
        if not parts:
            continue
        count = n_tpot if name in ("median_tpot_ms", "median_intvty") else n
        iv = _percentile_interval(np.concatenate(parts), level, count)
        if iv is not None:
            out[name] = iv
    return out


# --- repeated runs -----------------------------------------------------------------------------------------
def repeat_intervals(values: Sequence[float], level: float = 0.95) -> Interval:
    """Student-t interval for the mean of a metric over n ≥ 2 repeated runs of one point.

    mean ± t_{n−1, (1+level)/2} · s / √n, with s the sample standard deviation: exact coverage when the
    run-to-run values are normal (a few percent of log-normal run noise is normal to a very good
    approximation). Raises ValueError for fewer than two finite values.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    vals = np.asarray([float(v) for v in values if v is not None and math.isfinite(float(v))], dtype=float)
    n = int(vals.size)
    if n < 2:
        raise ValueError(f"repeat_intervals needs at least 2 finite values, got {n}")
    mean = float(vals.mean())
    half = t_ppf((1.0 + level) / 2.0, n - 1) * float(vals.std(ddof=1)) / math.sqrt(n)
    return Interval(lo=mean - half, hi=mean + half, level=level, method=METHOD_STUDENT_T, n=n)


def combine_repeats(
    raws: Sequence[Mapping[str, Any]], *, gpus: int, level: float = 0.95, n_boot: int = 1000, seed: int = 0,
) -> tuple[dict[str, float], dict[str, Interval]]:
    """Values and intervals of a point measured `len(raws)` times on one server.

    Per metric: the value is the mean over the repeats that have it; the interval is the across-runs
    Student-t one when two or more repeats have the metric, else the within-run bootstrap of the single
    run (which misses run-level noise; see the module docstring). Metrics no repeat has are absent.
    """
    per_run = [point_values(r, gpus=gpus) for r in raws]
    values: dict[str, float] = {}
    intervals: dict[str, Interval] = {}
    boots: dict[int, dict[str, Interval]] = {}
    for name in INTERVAL_METRICS:
        vals = [v[name] for v in per_run if name in v and math.isfinite(v[name])]
        if not vals:
            continue
        values[name] = float(np.mean(vals))
        if len(vals) >= 2:
            intervals[name] = repeat_intervals(vals, level)
            continue
        single = next(i for i, v in enumerate(per_run) if name in v)
        if single not in boots:
            boots[single] = point_intervals(raws[single], gpus=gpus, level=level, n_boot=n_boot, seed=seed)
        if name in boots[single]:
            intervals[name] = boots[single][name]
    return values, intervals
