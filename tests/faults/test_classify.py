"""The failure corpus: every example replays to its class; seed lines; exception chains; unknown."""

from __future__ import annotations

import pytest

from infersweep.engines.base import EngineError
from infersweep.faults import UNKNOWN_KIND, ClassifiedError, classify, kinds, load_corpus

CORPUS = load_corpus()
EXAMPLES = [(c.kind, i, ex.text) for c in CORPUS.classes for i, ex in enumerate(c.examples)]

# The seed's lines (InferenceX PR #1731: sibling nodes downloading into a shared NFS HF cache). The traceback
# follows huggingface_hub's WeakFileLock -> filelock path; the exception line is the one the PR quotes.
WEAKFILELOCK_ESTALE = """\
Traceback (most recent call last):
  File "/usr/local/lib/python3.12/dist-packages/huggingface_hub/file_download.py", line 1163, in _hf_hub_download_to_cache_dir
    with WeakFileLock(lock_path):
  File "/usr/lib/python3.12/contextlib.py", line 137, in __enter__
    return next(self.gen)
  File "/usr/local/lib/python3.12/dist-packages/huggingface_hub/utils/_fixes.py", line 98, in WeakFileLock
    lock.acquire(timeout=log_interval)
  File "/usr/local/lib/python3.12/dist-packages/filelock/_api.py", line 344, in acquire
    self._acquire()
  File "/usr/local/lib/python3.12/dist-packages/filelock/_unix.py", line 42, in _acquire
    fd = os.open(self.lock_file, open_flags, self._context.mode)
OSError: [Errno 116] Stale file handle
"""
KV_CACHE_LOG = """\
INFO 10-25 13:08:40 [gpu_model_runner.py:2602] Model loading took 68.33 GiB and 411.2 seconds
(EngineCore_DP0 pid=223840) ERROR 10-25 13:08:43 [core.py:708] EngineCore failed to start.
(EngineCore_DP0 pid=223840) ERROR 10-25 13:08:43 [core.py:708] ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.
(APIServer pid=1) RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {'EngineCore_DP0': 1}
"""


@pytest.mark.parametrize(("kind", "index", "text"), EXAMPLES, ids=[f"{k}-{i}" for k, i, _ in EXAMPLES])
def test_every_corpus_example_classifies_to_its_class(kind: str, index: int, text: str) -> None:
    assert classify(text).kind == kind


def test_corpus_has_sources_and_at_least_15_vllm_tracker_examples() -> None:
    assert all(ex.source.strip() for c in CORPUS.classes for ex in c.examples)
    vllm = {ex.source for c in CORPUS.classes for ex in c.examples
            if ex.source.startswith("https://github.com/vllm-project/vllm/issues/")}
    assert len(vllm) >= 15


def test_required_classes_and_their_retry_semantics() -> None:
    k = kinds()
    for transient in ("stale_file_handle", "hub_unavailable", "server_not_ready", "port_in_use",
                      "docker_daemon_unavailable"):
        assert k[transient] is True, transient
    for permanent in ("kv_cache_oom", "cuda_oom", "node_misconfigured", "image_not_found", "engine_cli_error",
                      "gated_repo", "accuracy_below_threshold", "failed_requests_over_threshold"):
        assert k[permanent] is False, permanent


def test_seed_weakfilelock_traceback_is_transient_estale() -> None:
    fc = classify(WEAKFILELOCK_ESTALE)
    assert fc.kind == "stale_file_handle" and fc.transient
    assert "Stale file handle" in fc.evidence


def test_seed_kv_cache_log_is_permanent_despite_generic_lines() -> None:
    fc = classify(KV_CACHE_LOG)
    assert (fc.kind, fc.transient) == ("kv_cache_oom", False)
    assert "No available memory for the cache blocks" in fc.evidence


def test_exception_chain_and_engine_log_tail_are_searched() -> None:
    try:
        try:
            raise OSError(116, "Stale file handle")
        except OSError as inner:
            raise RuntimeError("download of org/model failed") from inner
    except RuntimeError as exc:
        assert classify(exc).kind == "stale_file_handle"
    err = EngineError("server exited with code 1 before /health", log_tail="vllm: error: unrecognized arguments: --bogus")
    assert classify(err).kind == "engine_cli_error"


def test_classified_error_keeps_its_kind() -> None:
    fc = classify(ClassifiedError("accuracy_below_threshold", "gsm8k 0.71 < 0.90"))
    assert fc.kind == "accuracy_below_threshold" and not fc.transient


def test_unknown_is_retried_once() -> None:
    fc = classify(ValueError("something nobody has seen before"))
    assert fc.kind == UNKNOWN_KIND and fc.transient and fc.max_retries == 1
    assert "something nobody has seen before" in fc.evidence


def test_classified_error_with_a_kind_outside_the_corpus_is_permanent_unless_said_otherwise() -> None:
    fc = classify(ClassifiedError("sweep_cancelled", "operator asked to stop"))
    assert (fc.kind, fc.transient) == ("sweep_cancelled", False)
    fc = classify(ClassifiedError("lease_wait", "no node free yet", transient=True))
    assert (fc.kind, fc.transient, fc.max_retries) == ("lease_wait", True, 1)


def test_missing_repo_is_not_mistaken_for_a_gated_one() -> None:
    text = ("huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error. (Request ID: x)\n"
            "Repository Not Found for url: https://huggingface.co/api/models/org/nope/revision/main.")
    assert classify(text).kind == "hub_not_found"
