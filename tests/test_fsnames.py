"""safe_filename: the one sanitiser for file names built from DAG ids, run ids and serve-group names."""

from __future__ import annotations

import random
import re

import pytest

from infersweep.fsnames import safe_filename

pytestmark = pytest.mark.unit


# The sanitisers safe_filename replaced, verbatim: each caller must keep producing the same names, because
# spool files, server records, logs and reports are found again by recomputing them.
def _old_context(text: str) -> str:  # airflow/context.py `_safe` (spool and server-record files)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:120]


def _old_process(s: str) -> str:  # engines/process.py `_safe` (server log files)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:80]


def _old_report(text: str) -> str:  # report/service.py `safe_name` (report paths)
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "report"


_ALPHABET = "aZ09-_.:+~/ @#é٣²ß漢😀\t" + "x" * 5


def _samples() -> list[str]:
    rng = random.Random(7)
    fixed = ["", "_", "__", "::", "-", "scheduled__2026-11-27T02:00:00+00:00", "manual__2026-11-27T02:00:00.123+00:00",
             "minimaxm3-fp8-h200-vllm", "tp8-ep1-isl1024/osl1024", "café h200", "x" * 300, ":" * 130]
    return fixed + ["".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 200))) for _ in range(2000)]


def test_each_callers_settings_keep_its_old_names() -> None:
    for text in _samples():
        assert safe_filename(text) == _old_context(text), text
        assert safe_filename(text, max_len=80, ascii_only=True, squeeze=True) == _old_process(text), text
        assert safe_filename(text, max_len=None, ascii_only=True, squeeze=True, fallback="report") == \
            _old_report(text), text


def test_options() -> None:
    assert safe_filename("a::b/é") == "a__b_é"
    assert safe_filename("a::b/é", ascii_only=True) == "a__b__"
    assert safe_filename("a::b/é", ascii_only=True, squeeze=True) == "a_b_"
    assert safe_filename("::", squeeze=True, fallback="none") == "none"
    assert safe_filename("x" * 200) == "x" * 120 and safe_filename("x" * 200, max_len=None) == "x" * 200
