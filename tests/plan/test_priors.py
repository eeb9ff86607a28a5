"""Priors of the adaptive policy (plan.priors): the simulator's roofline model offline, and history means."""

from __future__ import annotations

from infersweep.plan.priors import history_prior, roofline_prior
from infersweep.recipes.model import Recipe


def _recipe(model: str, tp: int = 1) -> Recipe:
    return Recipe(image="vllm/vllm-openai:v0.11.0", argv=("vllm", "serve", model, f"--tensor-parallel-size={tp}"),
                  model=model, gpus=tp)


def test_roofline_prior_follows_the_shape_of_a_topology_curve() -> None:
    prior = roofline_prior(_recipe("meta-llama/Llama-3.1-8B-Instruct"), gpu_profile="h100", model_profile=None,
                           isl=1024, osl=128, concs=(1, 4, 16, 64), gpus=1)
    assert sorted(prior) == [1, 4, 16, 64]
    xs = [prior[c].x for c in sorted(prior)]
    ys = [prior[c].y for c in sorted(prior)]
    assert xs == sorted(xs, reverse=True) and ys == sorted(ys)  # interactivity falls, throughput grows
    # Two GPUs per server: per-GPU throughput is the server's over 2.
    tp2 = roofline_prior(_recipe("meta-llama/Llama-3.1-8B-Instruct", tp=2), gpu_profile="h100", model_profile=None,
                         isl=1024, osl=128, concs=(64,), gpus=2)
    assert 0 < tp2[64].y < prior[64].y * 1.5


def test_no_prior_without_a_profile_or_a_gpu() -> None:
    assert roofline_prior(_recipe("org/unknown-model"), gpu_profile="h100", model_profile=None, isl=1024, osl=128,
                          concs=(1,), gpus=1) == {}
    assert roofline_prior(_recipe("meta-llama/Llama-3.1-8B-Instruct"), gpu_profile=None, model_profile=None,
                          isl=1024, osl=128, concs=(1,), gpus=1) == {}


def test_history_prior_keeps_positive_means() -> None:
    prior = history_prior({4: (100.0, 2000.0), 8: (0.0, 10.0)})
    assert list(prior) == [4] and (prior[4].x, prior[4].y) == (100.0, 2000.0)
