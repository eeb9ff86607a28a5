"""A deterministic, realistically shaped sample sweep for screenshots, docs and tests.

The numbers come from a small closed-form decode model (TPOT grows with concurrency until the batch
saturates; larger TP is faster per user but costs more GPUs), labelled `engine="sim"` so every chart
that shows them carries the SIMULATED label. They are not measurements and are never presented as such.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from infersweep.report.data import ReportPoint

CONCS = (4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class _Series:
    config_key: str
    runner: str
    precision: str
    tp: int
    tpot0_ms: float  # TPOT at concurrency → 0
    c_half: float  # concurrency at which TPOT has doubled
    spec: str | None = None
    ep: int = 1
    dp_attn: bool = False


SERIES = (
    _Series("llama70b-fp8-h200-vllm", "h200", "fp8", 2, 19.0, 22.0),
    _Series("llama70b-fp8-h200-vllm", "h200", "fp8", 4, 11.5, 46.0),
    _Series("llama70b-fp8-h200-vllm", "h200", "fp8", 8, 7.8, 90.0),
    _Series("llama70b-fp4-b200-vllm", "b200", "fp4", 4, 6.4, 70.0),
    _Series("llama70b-fp4-b200-vllm", "b200", "fp4", 4, 4.4, 26.0, spec="eagle3"),
)


def _jitter(*parts: object, scale: float = 0.03) -> float:
    """A deterministic multiplicative jitter in [1 - scale, 1 + scale]."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return 1.0 + scale * (digest[0] / 127.5 - 1.0)


def sample_points(
    *,
    run_id: str = "manual__2026-11-27T02:00:00+00:00",
    dag_id: str = "llama70b-sample",
    image: str = "vllm/vllm-openai:v0.12.0",
    seq_lens: tuple[tuple[int, int], ...] = ((1024, 1024), (8192, 1024)),
    speedup: float = 1.0,
    fail: tuple[tuple[int, int], ...] = ((2, 256),),
) -> list[ReportPoint]:
    """A sample run: 5 series × 7 concurrencies per sequence length; `fail` = (tp, conc) points that OOM."""
    started = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    points = []
    model = "meta-llama/Llama-3.1-70B-Instruct"
    for isl, osl in seq_lens:
        prefill_cost = isl / 1024
        for s in SERIES:
            fp = hashlib.sha256(f"{s}|{isl}|{osl}".encode()).hexdigest()
            for conc in CONCS:
                common = {
                    "dag_id": dag_id, "run_id": run_id, "run_started_at": started, "image": image,
                    "engine": "sim", "recipe_fingerprint": fp, "config_key": s.config_key, "model": model,
                    "model_prefix": "llama70b", "runner": s.runner, "framework": "vllm", "precision": s.precision,
                    "spec_decoding": s.spec, "tp": s.tp, "ep": s.ep, "dp_attn": s.dp_attn, "gpus": s.tp,
                    "isl": isl, "osl": osl, "conc": conc,
                }
                if (s.tp, conc) in fail and s.precision == "fp8":
                    points.append(ReportPoint(
                        **common, status="failed", failure_kind="kv_cache_oom",
                        error="ValueError: No available memory for the cache blocks. Try increasing "
                              "`gpu_memory_utilization` when initializing the engine.",
                    ))
                    continue
                j = _jitter(s, isl, osl, conc, image)
                tpot = s.tpot0_ms * (1 + conc / s.c_half) * (1 + 0.08 * (prefill_cost - 1)) * j / speedup
                ttft = (45.0 + 9.0 * prefill_cost * conc / s.tp) * (2 / s.tp) ** 0.5 * j / speedup
                intvty = 1000.0 / tpot
                e2el = ttft + (osl - 1) * tpot
                out_tput = conc * osl / (e2el / 1000.0)
                total = out_tput * (isl + osl) / osl
                points.append(ReportPoint(
                    **common,
                    tput_per_gpu=total / s.tp, output_tput_per_gpu=out_tput / s.tp, median_ttft_ms=ttft,
                    p99_ttft_ms=ttft * 1.9, median_tpot_ms=tpot, p99_tpot_ms=tpot * 1.25, median_intvty=intvty,
                    median_e2el_ms=e2el, p99_e2el_ms=e2el * 1.2, num_completed=conc * 10, num_failed=0,
                    client_bound=conc >= 256 and s.tp >= 8,
                ))
    return points
