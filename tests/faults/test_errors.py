"""One error protocol: every infersweep error keeps the kind and transience it declares through `classify`."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import infersweep
from infersweep.artifacts.download import DownloadError, IncompleteDownloadError
from infersweep.faults import ClassifiedError, InfersweepError, classify, kinds


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub} | _all_subclasses(sub)
    return out


@pytest.fixture(scope="module")
def error_classes() -> set[type]:
    """Every InfersweepError subclass of the package (each module imported, so none hides)."""
    skip = ("infersweep.recipes.vllm_argparse_probe",)  # runs inside the vLLM venv, not importable here
    broken = []
    for mod in pkgutil.walk_packages(infersweep.__path__, "infersweep."):
        if mod.name.startswith(skip) or ".migrations." in mod.name:
            continue
        try:
            importlib.import_module(mod.name)
        except ImportError as exc:
            broken.append(f"{mod.name}: {exc}")
    assert not broken, broken  # every dependency is installed by `make install`: a failing import is a bug
    return _all_subclasses(InfersweepError)


def test_the_package_raises_its_errors_through_one_base(error_classes: set[type]) -> None:
    names = {c.__name__ for c in error_classes}
    # The errors named in the issue: config, recipes, engines, downloads, leases, the store, evals, bench.
    assert {"ConfigError", "RecipeError", "EngineError", "DownloadError", "IncompleteDownloadError", "LeaseLost",
            "StoreConfigError", "EvalRequestError", "TokenizerError", "ClassifiedError",
            "GpuRuntimeUnavailableError", "ImageUnavailableError"} <= names


def test_every_declared_kind_keeps_its_transience(error_classes: set[type]) -> None:
    """Each class that declares a kind (and, where it says so, a transience) is classified exactly so."""
    checked = 0
    for cls in sorted(error_classes, key=lambda c: c.__qualname__):
        if not cls.kind:
            continue
        exc = cls.__new__(cls)  # no constructor arguments needed: classify reads the class's declaration
        fc = classify(exc)
        assert fc.kind == cls.kind, cls
        expected = cls.transient if cls.transient is not None else kinds().get(cls.kind, False)
        assert fc.transient is expected, (cls, fc)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize(("error", "kind", "transient"), [
    (IncompleteDownloadError("config.json is 10 of 20 bytes"), "incomplete_download", True),
    (DownloadError("x", kind="stale_file_handle", transient=True, hint="", attempts=3), "stale_file_handle", True),
    (DownloadError("x", kind="gated_repo", transient=False, hint="", attempts=1), "gated_repo", False),
    (ClassifiedError("kv_cache_oom", "boom"), "kv_cache_oom", False),  # the corpus's semantics
    (ClassifiedError("server_died", "gone", transient=True), "server_died", True),  # declared wins
    (ClassifiedError("my_new_kind", "x"), "my_new_kind", False),  # unknown to the corpus: no blind retry
])
def test_instances_keep_what_they_declare(error: InfersweepError, kind: str, transient: bool) -> None:
    fc = classify(error)
    assert (fc.kind, fc.transient) == (kind, transient)


def test_an_error_without_a_kind_is_classified_by_its_text() -> None:
    from infersweep.engines.base import EngineError

    fc = classify(EngineError("server exited", log_tail="ValueError: No available memory for the cache blocks."))
    assert (fc.kind, fc.transient) == ("kv_cache_oom", False)
