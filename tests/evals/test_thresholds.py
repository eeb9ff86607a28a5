"""Threshold resolution (InferenceX order) and the pass/fail verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infersweep.evals.thresholds import (
    ACCURACY_BELOW_THRESHOLD,
    ThresholdConfigError,
    load_thresholds,
    parse_thresholds,
    verdict,
)


def test_bundled_file_matches_inferencex_fixture(inferencex_dir: Path) -> None:
    fixture = json.loads((inferencex_dir / "eval-thresholds.json").read_text())
    bundled = load_thresholds()
    assert bundled.default == {k: float(v) for k, v in fixture["default"].items()}
    assert bundled.models == {m: {t: float(v) for t, v in f.items()} for m, f in fixture["models"].items()}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("dsr1", (0.91, "models.dsr1")),
        ("glm5", (0.94, "models.glm5")),
        ("glm5.1", (0.93, "models.glm5.1")),
        ("qwen3.5", (0.94, "models.qwen3.5")),
        ("kimik2.5", (0.90, "models.kimik2.5")),
        ("minimaxm3", (0.90, "default")),  # a prefix without an override
        ("dsr", (0.90, "default")),  # prefixes are keys, not string prefixes
        (None, (0.90, "default")),
    ],
)
def test_resolution_order(prefix: str | None, expected: tuple[float, str]) -> None:
    assert load_thresholds().resolve(prefix, "gsm8k") == expected


def test_fallback_when_task_is_unknown() -> None:
    assert load_thresholds().resolve("dsr1", "mmlu") == (0.90, "fallback")


def test_legacy_flat_format_is_the_default_block() -> None:
    floors = parse_thresholds({"gsm8k": 0.85})
    assert floors.resolve("dsr1", "gsm8k") == (0.85, "default")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "top level must be an object"),
        ({"default": {"gsm8k": 1.5}}, r"default\.gsm8k: floor must be a number in \[0, 1\]"),
        ({"default": {}, "models": {"x": {"gsm8k": "high"}}}, r"models\.x\.gsm8k"),
        ({"default": {}, "model": {}}, "unknown top-level key"),
        ({"models": []}, "'models' must map"),
    ],
)
def test_bad_configs_name_the_key(raw: object, message: str) -> None:
    with pytest.raises(ThresholdConfigError, match=message):
        parse_thresholds(raw, "t.json")


def test_load_reports_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "t.json"
    bad.write_text("{nope")
    with pytest.raises(ThresholdConfigError, match=r"t\.json: not valid JSON"):
        load_thresholds(bad)
    with pytest.raises(ThresholdConfigError, match="cannot read"):
        load_thresholds(tmp_path / "missing.json")


def test_verdict_requires_every_filter() -> None:
    assert verdict({"strict": 0.95, "flexible": 0.93}, 0.93) == (True, None)
    assert verdict({"strict": 0.92, "flexible": 0.99}, 0.93) == (False, ACCURACY_BELOW_THRESHOLD)
