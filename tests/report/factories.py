"""Hand-made ReportPoints for the report tests."""

from __future__ import annotations

from typing import Any

from infersweep.report.data import ReportPoint


def pt(conc: int = 8, *, run: str = "r1", image: str = "img:a", tput: float | None = 1000.0,
       intvty: float | None = 50.0, ttft: float | None = 100.0, e2el: float | None = 20000.0,
       status: str = "ok", **kw: Any) -> ReportPoint:
    """A point of config `cfg` (tp4, 1k/1k) with the headline metrics given."""
    base: dict[str, Any] = {
        "dag_id": "cfg", "run_id": run, "image": image, "engine": "vllm-docker", "config_key": "cfg",
        "model": "org/model", "runner": "h200", "framework": "vllm", "precision": "fp8", "tp": 4,
        "isl": 1024, "osl": 1024, "conc": conc, "recipe_fingerprint": "f" * 64,
    }
    if status == "ok":
        base.update(tput_per_gpu=tput, output_tput_per_gpu=None if tput is None else tput / 2,
                    median_intvty=intvty, median_ttft_ms=ttft, median_e2el_ms=e2el,
                    median_tpot_ms=None if not intvty else 1000 / intvty)
    else:
        base.update(status="failed", failure_kind=kw.pop("failure_kind", "kv_cache_oom"), error="boom")
    base.update(kw)
    return ReportPoint(**base)
