"""Sweep-level settings: eval, benchmark client, schedule, engine, image-tag pattern for backfills."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from infersweep.config.master import FieldProblem

Engine = Literal["sim", "vllm-docker", "vllm-process"]
ENGINES: tuple[str, ...] = ("sim", "vllm-docker", "vllm-process")
DEFAULT_ENGINE: Engine = "vllm-docker"
DEFAULT_SCHEDULE = "0 2 * * *"
DEFAULT_THRESHOLD = 0.90

Fraction = Annotated[StrictFloat, Field(gt=0, le=1)]
#: An accuracy floor; 0 records the eval without gating on it (e.g. a tiny model that exercises the path).
Threshold = Annotated[StrictFloat, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EvalThresholds(_Strict):
    """InferenceX `eval-thresholds.json`: `default` per task, optional per-model-prefix overrides."""

    default: dict[str, Threshold] = Field(default_factory=dict)
    models: dict[str, dict[str, Threshold]] = Field(default_factory=dict)


class EvalSettings(_Strict):
    """Accuracy check run on a serve group's eval concurrencies (gsm8k, scored like lm-eval)."""

    enabled: StrictBool = True
    select: Literal["inferencex", "max-conc"] = Field(
        default="inferencex",
        description="which points get an eval: InferenceX's rule (8k1k only, highest + median conc >= 16) or "
                    "every serve group's highest conc (small/demo sweeps with other shapes)",
    )
    task: Literal["gsm8k"] = "gsm8k"
    limit: Annotated[StrictInt, Field(gt=0)] | None = Field(default=None, description="questions; None = all 1,319")
    num_fewshot: Annotated[StrictInt, Field(ge=0)] = Field(default=5, alias="num-fewshot")
    default_threshold: Threshold = Field(default=DEFAULT_THRESHOLD, alias="default-threshold")
    thresholds: EvalThresholds | None = None
    thresholds_file: StrictStr | None = Field(default=None, alias="thresholds-file",
                                              description="eval-thresholds.json, relative to the sweep file")
    data_dir: StrictStr | None = Field(
        default=None, alias="data-dir",
        description="local GSM8K train.jsonl/test.jsonl (relative to the sweep file); default: the hub's openai/gsm8k")

    def threshold_for(self, model_prefix: str, task: str | None = None) -> float:
        """Minimum accuracy for `model_prefix`: its own entry, else the file default, else default-threshold."""
        task = task or self.task
        table = self.thresholds or EvalThresholds()
        per_model = table.models.get(model_prefix, {})
        if task in per_model:
            return per_model[task]
        return table.default.get(task, self.default_threshold)


class SimSettings(_Strict):
    """Simulated-engine knobs (engine: sim). Results always carry engine=sim and the time scale."""

    time_scale: Annotated[float, Field(gt=0)] = Field(
        default=1.0, alias="time-scale", description="run this many times faster than real time")
    accuracy: Fraction = Field(default=0.95, description="fraction of GSM8K questions the sim answers right")
    model_profile: StrictStr | None = Field(default=None, alias="model-profile",
                                            description="sim model profile; default: the profile of the HF id")


class BenchSettings(_Strict):
    """Benchmark-client settings shared by every point (InferenceX defaults)."""

    random_range_ratio: Fraction = Field(default=0.8, alias="random-range-ratio")
    prompts_per_conc: Annotated[StrictInt, Field(gt=0)] = Field(default=10, alias="prompts-per-conc")
    warmups_per_conc: Annotated[StrictInt, Field(ge=0)] = Field(default=2, alias="warmups-per-conc")


_CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z?LW#]+$")
_CRON_PRESETS = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@continuous"}
_TEMPLATE_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
TEMPLATE_VARS = ("ds", "ds_nodash", "yyyy", "mm", "dd")


def check_schedule(value: str | None) -> str | None:
    """Accept a 5-field cron line, an Airflow preset, or None (manual triggers only)."""
    if value is None:
        return None
    fields = value.split()
    if value.strip() in _CRON_PRESETS or (len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)):
        return value.strip()
    raise FieldProblem(f"{value!r} is not a cron schedule",
                       "5 cron fields like '0 2 * * *', a preset like @daily, or null for manual runs")


def render_image(pattern: str, day: date) -> str:
    """Render an image-tag pattern for one logical date: `{{ ds_nodash }}` → 20260612."""
    values = {"ds": day.isoformat(), "ds_nodash": day.strftime("%Y%m%d"),
              "yyyy": f"{day.year:04d}", "mm": f"{day.month:02d}", "dd": f"{day.day:02d}"}
    return _TEMPLATE_VAR.sub(lambda m: values[m.group(1)], pattern)


def check_image_pattern(pattern: str) -> str:
    unknown = sorted({m.group(1) for m in _TEMPLATE_VAR.finditer(pattern)} - set(TEMPLATE_VARS))
    if unknown:
        raise FieldProblem(f"unknown template variable {{{{ {unknown[0]} }}}}", ", ".join(TEMPLATE_VARS))
    if not _TEMPLATE_VAR.search(pattern):
        raise FieldProblem("image-tag-pattern has no date variable, so every backfill would use one image",
                           "e.g. vllm/vllm-openai:nightly-{{ ds_nodash }}")
    last = render_image(pattern, date(2026, 1, 1)).rsplit("/", 1)[-1]
    if ":" not in last and "@" not in last:
        raise FieldProblem("image-tag-pattern renders an image without a tag", "repo:tag-{{ ds_nodash }}")
    return pattern


def check_image_history(history: dict[date, str]) -> dict[date, str]:
    """Every recorded image must be pinned (tag or digest)."""
    for day, image in history.items():
        last = image.rsplit("/", 1)[-1]
        if ":" not in last and "@" not in last:
            raise FieldProblem(f"image {image!r} for {day} has no tag", "repo:tag or repo@sha256:digest")
    return history
