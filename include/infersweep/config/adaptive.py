"""Sweep-file settings of the policies that choose points: `adaptive:` (frontier search, SLO search) and
`repeats:` (measure a point several times on one server). Both are off by default, so a sweep measures
InferenceX's ladder exactly, once per point."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

#: Modes of the `adaptive` Param and `adaptive.mode`: the full ladder, the frontier search, the SLO search.
ADAPTIVE_MODES: tuple[str, ...] = ("off", "frontier", "slo")
AdaptiveMode = Literal["off", "frontier", "slo"]
#: Metrics an SLO target can bound (the store's columns; all "lower is better", in milliseconds).
SLO_METRICS: tuple[str, ...] = ("median_ttft_ms", "p99_ttft_ms", "median_tpot_ms", "p99_tpot_ms", "median_e2el_ms",
                                "p99_e2el_ms")
#: Most repeats of one point: each one is a full benchmark run (10 x conc requests at InferenceX's settings).
MAX_REPEATS = 20

Positive = Annotated[float, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SloTargets(_Strict):
    """Service-level targets, as vLLM's `--goodput` takes them: each set metric must be at most its value.
    A point meets the SLO when every set target holds."""

    median_ttft_ms: Positive | None = Field(default=None, alias="median-ttft-ms")
    p99_ttft_ms: Positive | None = Field(default=None, alias="p99-ttft-ms")
    median_tpot_ms: Positive | None = Field(default=None, alias="median-tpot-ms")
    p99_tpot_ms: Positive | None = Field(default=None, alias="p99-tpot-ms")
    median_e2el_ms: Positive | None = Field(default=None, alias="median-e2el-ms")
    p99_e2el_ms: Positive | None = Field(default=None, alias="p99-e2el-ms")

    @model_validator(mode="after")
    def _some(self) -> SloTargets:
        if not self.targets():
            raise ValueError("set at least one target, e.g. {p99-ttft-ms: 2000, median-tpot-ms: 50}")
        return self

    def targets(self) -> dict[str, float]:
        """The set targets: store metric name → upper limit."""
        return {name: float(v) for name in SLO_METRICS if (v := getattr(self, name)) is not None}

    def describe(self) -> str:
        """E.g. `p99 TTFT <= 2000 ms, median TPOT <= 50 ms`."""
        return ", ".join(f"{_label(k)} <= {v:g} ms" for k, v in self.targets().items())


def _label(metric: str) -> str:
    stat, name, _unit = metric.split("_")
    return f"{stat} {name.upper()}"


class PriorMargins(_Strict):
    """How far a prior may be off before calibration against this run's measurements (relative)."""

    roofline: Annotated[float, Field(ge=0, le=5)] = 0.25
    history: Annotated[float, Field(ge=0, le=5)] = 0.10


class AdaptiveSettings(_Strict):
    """`adaptive:`: which points of each topology's ladder to measure (see plan.adaptive and plan.slo)."""

    mode: AdaptiveMode = Field(default="off", description="off: the full ladder (InferenceX parity); frontier: "
                               "only points that can move the Pareto frontier; slo: bisect for the largest "
                               "concurrency meeting `slo`")
    tolerance: Annotated[float, Field(gt=0, le=0.5)] = Field(
        default=0.01, description="stop when no unmeasured point can raise the frontier by more than this")
    noise: Annotated[float, Field(ge=0, le=0.5)] = Field(
        default=0.03, description="run-to-run noise allowed for in every bound (relative)")
    max_points: Annotated[float, Field(gt=0)] | None = Field(
        default=None, alias="max-points",
        description="point budget per config key and sequence length: a fraction of the ladder (<= 1) or a count")
    concurrencies: Literal["ladder", "range"] = Field(
        default="ladder", description="ladder: the configured concurrencies; range: any integer in "
                                      "[conc-start, conc-end]")
    priors: tuple[Literal["history", "roofline"], ...] = Field(
        default=("history", "roofline"), description="what may predict a topology before it is measured")
    prior_margin: PriorMargins = Field(default_factory=PriorMargins, alias="prior-margin")
    group_skip: bool = Field(default=True, alias="group-skip",
                             description="skip a whole topology (no server boot) that a prior shows dominated")
    slo: SloTargets | None = None

    @model_validator(mode="after")
    def _slo_needs_targets(self) -> AdaptiveSettings:
        if self.mode == "slo" and self.slo is None:
            raise ValueError("mode slo needs targets: add `slo: {p99-ttft-ms: 2000, median-tpot-ms: 50}` under "
                             "`adaptive:`")
        return self


class RepeatRule(_Strict):
    """`n` repeats for the points matching every set selector (a group by its layout, a point by conc too)."""

    n: Annotated[StrictInt, Field(ge=1, le=MAX_REPEATS)]
    seq_len: str | None = Field(default=None, alias="seq-len", description="1k1k, 8k1k or <isl>_<osl>")
    tp: StrictInt | None = None
    ep: StrictInt | None = None
    dp_attn: bool | None = Field(default=None, alias="dp-attn")
    conc: StrictInt | None = None

    def matches(self, *, seq_len: str, tp: int, ep: int, dp_attn: bool, conc: int) -> bool:
        """Whether this rule selects the point."""
        wanted = {"seq_len": seq_len, "tp": tp, "ep": ep, "dp_attn": dp_attn, "conc": conc}
        return all(getattr(self, k) is None or getattr(self, k) == v for k, v in wanted.items())


class RepeatSettings(_Strict):
    """`repeats:`: how many times each point is measured on its server (a number, or a default plus rules;
    the last matching rule wins). Repeated points get intervals across the runs."""

    default: Annotated[StrictInt, Field(ge=1, le=MAX_REPEATS)] = 1
    rules: tuple[RepeatRule, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _number(cls, data: object) -> object:
        return {"default": data} if isinstance(data, int) and not isinstance(data, bool) else data

    def for_point(self, *, seq_len: str, tp: int, ep: int, dp_attn: bool, conc: int) -> int:
        """Repeats of one point."""
        n = self.default
        for rule in self.rules:
            if rule.matches(seq_len=seq_len, tp=tp, ep=ep, dp_attn=dp_attn, conc=conc):
                n = rule.n
        return n
