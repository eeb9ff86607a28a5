"""The headline metrics a report shows and a gate judges, each with its "better" direction."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """A ReportPoint metric field, its label and which way is better."""

    field: str
    label: str
    unit: str
    higher_is_better: bool

    def badness(self, rel_delta: float) -> float:
        """Positive when the relative change `(head - base) / base` is a change for the worse."""
        return -rel_delta if self.higher_is_better else rel_delta


METRICS: dict[str, MetricSpec] = {
    m.field: m
    for m in (
        MetricSpec("tput_per_gpu", "tput/GPU", "tok/s/GPU", higher_is_better=True),
        MetricSpec("output_tput_per_gpu", "out tput/GPU", "tok/s/GPU", higher_is_better=True),
        MetricSpec("median_intvty", "interactivity", "tok/s/user", higher_is_better=True),
        MetricSpec("median_ttft_ms", "TTFT p50", "ms", higher_is_better=False),
        MetricSpec("p99_ttft_ms", "TTFT p99", "ms", higher_is_better=False),
        MetricSpec("median_tpot_ms", "TPOT p50", "ms", higher_is_better=False),
        MetricSpec("p99_tpot_ms", "TPOT p99", "ms", higher_is_better=False),
        MetricSpec("median_e2el_ms", "E2EL p50", "ms", higher_is_better=False),
        MetricSpec("p99_e2el_ms", "E2EL p99", "ms", higher_is_better=False),
    )
}

#: What the regression gate judges by default: the two axes of the main chart plus the two latencies
#: users feel. p99s are shown but not gated by default: with a few hundred requests they are too noisy.
DEFAULT_GATE_METRICS: tuple[str, ...] = ("tput_per_gpu", "median_intvty", "median_ttft_ms", "median_e2el_ms")


def metric(name: str) -> MetricSpec:
    """The spec of a metric by field name; a clear error lists the known ones."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None
