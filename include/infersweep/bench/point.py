"""One measured point on its way from the benchmark client to the store, in one typed shape."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: Per-request lists kept only in the raw client JSON, not in the metrics JSON.
PER_REQUEST_KEYS = frozenset({"input_lens", "output_lens", "ttfts", "itls", "latencies", "start_times", "errors",
                              "generated_texts", "tpots"})


class PointResult(BaseModel):
    """A point's verdict, headline metrics and the client's JSON unchanged (`raw`).

    `metrics` holds the client's scalar metrics (vLLM names); the store derives its typed columns from them.
    A failed point keeps its metrics too: a partial result is evidence.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: Literal["ok", "failed"]
    error: str | None = None
    client_bound: bool = False
    metrics: dict[str, Any] = Field(default_factory=dict)
    raw: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_client(cls, result: dict[str, Any], *, time_scale: float = 1.0) -> PointResult:
        """The client's result JSON as a point; against the time-scaled simulator (`time_scale` > 1) the
        figures are first converted to simulated time (the raw JSON records the scale)."""
        if time_scale != 1.0:
            from infersweep.bench.timescale import to_simulated_time

            result = to_simulated_time(result, time_scale)
        verdict = result.get("infersweep", {})
        return cls(
            status="ok" if verdict.get("passed", False) else "failed",
            error="; ".join(verdict.get("fail_reasons", [])) or None,
            client_bound=bool(verdict.get("client_bound", False)),
            metrics={k: v for k, v in result.items() if k not in PER_REQUEST_KEYS and k != "infersweep"},
            raw=result,
        )
