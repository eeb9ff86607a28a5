"""The corpus covers every engine infersweep serves (issue 17), not only vLLM.

Each engine must have real failure messages from its own public tracker (recognised by the repository in the
example's source URL); every class keeps at least one replayed example; the new engines' examples classify to
their class, and the new patterns do not pull a wrapped root cause into a generic class.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from infersweep.faults import classify, load_corpus

CORPUS = load_corpus()
_REPO = re.compile(r"^https://github\.com/([^/\s]+/[^/\s]+)/(?:issues|pull)/\d+")

#: engine -> the trackers whose examples count for it (ATOM failures are mostly ROCm/HIP/RCCL ones).
ENGINE_REPOS = {
    "vllm": ("vllm-project/vllm",),
    "sglang": ("sgl-project/sglang",),
    "trtllm": ("NVIDIA/TensorRT-LLM",),
    "atom": ("ROCm/ATOM",),
}
#: The minimum per engine (vLLM's own floor is in test_classify.py).
MIN_EXAMPLES = {"sglang": 4, "trtllm": 4, "atom": 3}


def _repo(source: str) -> str | None:
    m = _REPO.match(source.strip())
    return m.group(1) if m else None


def _examples_by_repo() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for c in CORPUS.classes:
        for ex in c.examples:
            repo = _repo(ex.source)
            if repo:
                out.setdefault(repo, []).append((c.kind, ex.text))
    return out


@pytest.mark.parametrize("engine", sorted(MIN_EXAMPLES))
def test_each_engine_has_examples_from_its_own_tracker(engine: str) -> None:
    by_repo = _examples_by_repo()
    examples = [ex for repo in ENGINE_REPOS[engine] for ex in by_repo.get(repo, [])]
    assert len(examples) >= MIN_EXAMPLES[engine], (engine, examples)
    # more than one failure class per engine: the corpus is not a single message repeated
    assert len({kind for kind, _ in examples}) >= 2, (engine, examples)


def test_atom_rocm_failures_cover_hip_oom_missing_binaries_and_rccl() -> None:
    rocm = [
        (kind, text)
        for repo, exs in _examples_by_repo().items()
        if repo.startswith("ROCm/")
        for kind, text in exs
    ]
    kinds = Counter(kind for kind, _ in rocm)
    for kind in (
        "cuda_oom",
        "unsupported_hardware",
        "nccl_error",
        "illegal_memory_access",
        "engine_start_failed",
    ):
        assert kinds[kind] >= 1, (kind, kinds)


def test_every_class_still_has_an_example_and_every_example_a_source() -> None:
    for c in CORPUS.classes:
        assert c.examples, c.kind
        assert all(ex.text.strip() and ex.source.strip() for ex in c.examples), c.kind


def test_every_engine_example_classifies_to_its_class() -> None:
    engine_repos = {r for repos in ENGINE_REPOS.values() for r in repos if r != "vllm-project/vllm"}
    wrong = [
        (kind, text, classify(text).kind)
        for repo, exs in _examples_by_repo().items()
        if repo in engine_repos or repo.startswith("ROCm/")
        for kind, text in exs
        if classify(text).kind != kind
    ]
    assert not wrong


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        # TensorRT-LLM wraps every startup failure in "Failed to initialize executor on rank N"; the root cause wins.
        (
            "[07/08/2025-19:47:15] [TRT-LLM] [RANK 1] [E] Failed to initialize executor on rank 1: Executor creation "
            "failed due to insufficient GPU memory.\n\nThe following component could not be created: KV cache",
            "kv_cache_oom",
        ),
        (
            "[11/18/2025-09:33:30] [TRT-LLM] [RANK 0] [E] Failed to initialize executor on rank 0: [TensorRT-LLM][ERROR] "
            "Assertion failed: Failed, NCCL error ../tensorrt_llm/runtime/ncclCommunicator.cpp:90 'invalid usage (run with "
            "NCCL_DEBUG=WARN for details)'",
            "nccl_error",
        ),
        (
            "RuntimeError: Encountered an error in forwardAsync function: [TensorRT-LLM][ERROR] CUDA runtime error in "
            "::cudaMallocAsync(ptr, n, mMemPool->getPool(), mCudaStream->get()): out of memory",
            "cuda_oom",
        ),
        # the unwrapped internal error is its own (permanent) class
        (
            "[TensorRT-LLM][ERROR] Assertion failed: Error occurred when running GEMM!",
            "trtllm_executor_error",
        ),
    ],
)
def test_trtllm_wrapper_lines_do_not_hide_the_root_cause(text: str, kind: str) -> None:
    assert classify(text).kind == kind


def test_new_generic_classes_semantics() -> None:
    trt = classify("[TensorRT-LLM][ERROR] Assertion failed: Error occurred when running GEMM!")
    assert trt.permanent and trt.max_retries is None
    start = classify(
        "Engine Core Mgr: Received unexpected SHUTDOWN signal from DP rank 0 during initialization"
    )
    assert (start.kind, start.transient, start.max_retries) == ("engine_start_failed", True, 1)


def test_sglang_generic_lines_keep_the_root_cause_of_the_same_log() -> None:
    # An SGLang scheduler traceback ends in the root cause and is followed by the launcher's sigquit line
    # (both lines as in sgl-project/sglang#4289); the NCCL error, not the generic lines, classifies it.
    log = (
        "RuntimeError: NCCL error: unhandled system error (run with NCCL_DEBUG=INFO for details)\n\n"
        "[2025-03-11 15:02:53] Received sigquit from a child process. It usually means the child failed.\n"
    )
    assert classify(log).kind == "nccl_error"
    assert classify(log.splitlines()[-1]).kind == "engine_start_failed"
