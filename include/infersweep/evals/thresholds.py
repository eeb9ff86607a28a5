"""Accuracy floors per model prefix, in InferenceX's `thresholds.json` format.

    {"default": {"gsm8k": 0.90}, "models": {"dsr1": {"gsm8k": 0.91}, ...}}

Resolution is most-specific-first, as InferenceX's `validate_scores.py`: `models[prefix][task]`,
then `default[task]`, then 0.90. The legacy flat form `{"gsm8k": 0.85}` is the default block.
Every exact_match filter must reach the floor; a point below it carries the failure class
`accuracy_below_threshold`, which is permanent (a retry would reproduce the same greedy answers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from infersweep.faults.errors import InfersweepError

ACCURACY_BELOW_THRESHOLD = "accuracy_below_threshold"
FALLBACK_THRESHOLD = 0.90
BUNDLED_THRESHOLDS = Path(__file__).with_name("thresholds.json")


class ThresholdConfigError(InfersweepError, ValueError):
    """The thresholds file is missing or malformed."""

    kind = "config_error"
    transient = False


@dataclass(frozen=True)
class Thresholds:
    """Parsed thresholds: per-task defaults and per-model-prefix overrides."""

    default: dict[str, float] = field(default_factory=dict)
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    fallback: float = FALLBACK_THRESHOLD

    def resolve(self, model_prefix: str | None, task: str) -> tuple[float, str]:
        """Return `(threshold, source)`; source is `models.<prefix>`, `default` or `fallback`."""
        if model_prefix and task in self.models.get(model_prefix, {}):
            return self.models[model_prefix][task], f"models.{model_prefix}"
        if task in self.default:
            return self.default[task], "default"
        return self.fallback, "fallback"


def load_thresholds(path: str | Path | None = None) -> Thresholds:
    """Read a thresholds JSON file (the bundled InferenceX floors when `path` is None)."""
    source = Path(path) if path is not None else BUNDLED_THRESHOLDS
    try:
        raw = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ThresholdConfigError(f"{source}: cannot read thresholds file ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ThresholdConfigError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    return parse_thresholds(raw, str(source))


def parse_thresholds(raw: object, where: str = "thresholds") -> Thresholds:
    """Validate the thresholds structure; errors name the key path and the expected shape."""
    if not isinstance(raw, dict):
        raise ThresholdConfigError(f"{where}: top level must be an object like {{\"default\": {{\"gsm8k\": 0.9}}}}")
    if "default" not in raw and "models" not in raw:
        return Thresholds(default=_task_floors(raw, where))
    unknown = set(raw) - {"default", "models"}
    if unknown:
        raise ThresholdConfigError(f"{where}: unknown top-level key(s) {sorted(unknown)}; use 'default' and 'models'")
    models_raw = raw.get("models", {})
    if not isinstance(models_raw, dict):
        raise ThresholdConfigError(f"{where}: 'models' must map a model prefix to {{task: floor}}")
    return Thresholds(
        default=_task_floors(raw.get("default", {}), f"{where}: default"),
        models={prefix: _task_floors(floors, f"{where}: models.{prefix}") for prefix, floors in models_raw.items()},
    )


def _task_floors(raw: object, where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ThresholdConfigError(f"{where}: must map task names to floors in [0, 1]")
    floors: dict[str, float] = {}
    for task, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
            raise ThresholdConfigError(f"{where}.{task}: floor must be a number in [0, 1], got {value!r}")
        floors[str(task)] = float(value)
    return floors


def verdict(scores: dict[str, float], threshold: float) -> tuple[bool, str | None]:
    """Pass only when every filter's score reaches the threshold; else the permanent failure class."""
    passed = all(score >= threshold for score in scores.values())
    return passed, None if passed else ACCURACY_BELOW_THRESHOLD
