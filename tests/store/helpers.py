"""Small builders shared by the store tests."""

from __future__ import annotations

from infersweep.bench.point import PointResult
from infersweep.plan.models import ServeGroup
from infersweep.recipes.model import Recipe


def group(gid: str = "g1", *, tp: int = 1, concs: tuple[int, ...] = (1, 2, 4, 8), eval_concs: tuple[int, ...] = (4,),
          image: str = "vllm/vllm-openai:v0.11.0") -> ServeGroup:
    return ServeGroup(
        id=gid, config_key="tiny-fp8-h200-vllm", image=image, model="org/tiny", model_prefix="tiny", precision="fp8",
        framework="vllm", runner="h200", isl=1024, osl=1024, tp=tp, max_model_len=2304, exp_name="tiny_1k1k",
        concs=concs, eval_concs=eval_concs,
    )


def recipe(image: str = "vllm/vllm-openai:v0.11.0", tp: int = 1) -> Recipe:
    return Recipe(image=image, argv=("vllm", "serve", "org/tiny", f"--tensor-parallel-size={tp}"), model="org/tiny",
                  gpus=tp)


def point(conc: int, tput: float = 1000.0) -> PointResult:
    """A bench-client-like point: vLLM metric names, plus the raw client JSON."""
    metrics = {
        "total_token_throughput": tput * 2, "output_throughput": tput, "median_ttft_ms": 50.0 + conc,
        "p99_ttft_ms": 90.0 + conc, "median_tpot_ms": 10.0, "p99_tpot_ms": 20.0, "median_e2el_ms": 1000.0,
        "p99_e2el_ms": 1500.0, "completed": conc * 10, "failed": 0,
    }
    return PointResult(status="ok", metrics=metrics, raw={"max_concurrency": conc, "num_prompts": conc * 10, **metrics})
