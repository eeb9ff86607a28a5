"""Sweep-level settings: eval, benchmark client, schedule, engine, image-tag pattern for backfills."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from infersweep.config import names
from infersweep.config.master import FieldProblem, at_most

Engine = Literal["sim", "vllm-docker", "vllm-process", "slurm"]
ENGINES: tuple[str, ...] = ("sim", "vllm-docker", "vllm-process", "slurm")
DEFAULT_ENGINE: Engine = "vllm-docker"
DEFAULT_SCHEDULE = "0 2 * * *"
DEFAULT_THRESHOLD = 0.90

#: Few-shot examples per eval prompt. lm-eval's gsm8k default is 5 (8 for chain-of-thought); each shot adds
#: ~150 tokens to every prompt, so 64 already needs ~10k tokens of context, more than the 8k1k servers have.
MAX_FEWSHOT = 64
#: Benchmark prompts (and warm-ups) per concurrency: InferenceX sends 10 x conc; 1,000 x 65,536 is already
#: 65M requests.
MAX_PROMPTS_PER_CONC = 1000
#: A schedule must fire within this many years (a cron like '0 2 31 2 *' never does). Eight covers the longest
#: gap between two 29 Februaries (2096 to 2104).
SCHEDULE_HORIZON_YEARS = 8


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
    num_fewshot: Annotated[StrictInt, Field(ge=0), at_most(
        MAX_FEWSHOT, "each shot adds ~150 tokens to every prompt, and 64 already fill the ~10k-token context of "
        "the 8k1k servers evaluated (lm-eval's gsm8k default is 5)")] = Field(default=5, alias="num-fewshot")
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


class SimNoiseSettings(_Strict):
    """Run-to-run noise of the simulated engine (`sim: {noise: {run-sigma: 0.03, step-sigma: 0.02}}`): every
    step's time is multiplied by a slowly drifting log-normal speed factor (relative σ `run-sigma`,
    correlation time `tau-s` simulated seconds) and an i.i.d. per-step jitter (`step-sigma`); see
    `engines/sim/noise.py`. Both 0: off."""

    run_sigma: Annotated[StrictFloat | StrictInt, Field(ge=0, le=0.5)] = Field(
        default=0.0, alias="run-sigma", description="relative σ of the run-to-run speed factor (0.03 = 3 %)")
    step_sigma: Annotated[StrictFloat | StrictInt, Field(ge=0, le=0.5)] = Field(
        default=0.0, alias="step-sigma", description="relative σ of the per-step jitter")
    seed: Annotated[StrictInt, Field(ge=0)] = 0
    tau_s: Annotated[StrictFloat | StrictInt, Field(gt=0, le=86_400)] = Field(
        default=30.0, alias="tau-s", description="correlation time of the speed factor (simulated seconds)")

    def sim_args(self) -> list[str]:
        """The `infersweep sim serve` flags for these settings (none when the noise is off)."""
        if not (self.run_sigma or self.step_sigma):
            return []
        return ["--noise-run-sigma", repr(float(self.run_sigma)), "--noise-step-sigma", repr(float(self.step_sigma)),
                "--noise-seed", str(self.seed), "--noise-tau-s", repr(float(self.tau_s))]


class SimSettings(_Strict):
    """Simulated-engine knobs (engine: sim). Results always carry engine=sim and the time scale."""

    time_scale: Annotated[float, Field(gt=0)] = Field(
        default=1.0, alias="time-scale", description="run this many times faster than real time")
    accuracy: Fraction = Field(default=0.95, description="fraction of GSM8K questions the sim answers right")
    model_profile: StrictStr | None = Field(default=None, alias="model-profile",
                                            description="sim model profile; default: the profile of the HF id")
    noise: SimNoiseSettings | None = Field(default=None, description="run-to-run noise; default: off")


class BenchSettings(_Strict):
    """Benchmark-client settings shared by every point (InferenceX defaults)."""

    random_range_ratio: Fraction = Field(default=0.8, alias="random-range-ratio")
    prompts_per_conc: Annotated[StrictInt, Field(gt=0), at_most(
        MAX_PROMPTS_PER_CONC, "the benchmark sends this many prompts per unit of concurrency (InferenceX: 10)")] = Field(
        default=10, alias="prompts-per-conc")
    warmups_per_conc: Annotated[StrictInt, Field(ge=0), at_most(
        MAX_PROMPTS_PER_CONC, "the benchmark sends this many warm-ups per unit of concurrency (InferenceX: 2)")] = Field(
        default=2, alias="warmups-per-conc")


#: What can raise an alert: a failed sweep run (its verdict), a regression found by the report DAG's gate, a node
#: lease of the run that expired instead of being released (a node that never freed).
NotifyEvent = Literal["failure", "regression", "stuck_node"]
NOTIFY_EVENTS: tuple[str, ...] = ("failure", "regression", "stuck_node")


class SmtpNotify(_Strict):
    """E-mail through the SMTP server of an Airflow connection (host, port, login, password; extra
    `{"starttls": true}` or `{"ssl": true}`). The password lives in the connection, never in the sweep file."""

    conn_id: StrictStr = Field(default="infersweep_smtp", alias="conn-id", min_length=1)
    to: tuple[StrictStr, ...] = Field(min_length=1, description="recipients")
    sender: StrictStr | None = Field(default=None, alias="from",
                                     description="From address; default: the connection's login, else infersweep@<host>")


class WebhookNotify(_Strict):
    """An HTTP POST of the alert as JSON to the URL of an Airflow connection (`host` holds the URL, or
    schema/host/port/path); its password, when set, is sent as `Authorization: Bearer <password>`."""

    conn_id: StrictStr = Field(default="infersweep_webhook", alias="conn-id", min_length=1)


class NotifySettings(_Strict):
    """Alerts of one sweep file (`notify:`), off by default. Secrets come only from the Airflow connections
    named here, never from the YAML."""

    on: tuple[NotifyEvent, ...] = Field(default=("failure", "regression"), description="events that alert")
    smtp: SmtpNotify | None = None
    webhook: WebhookNotify | None = None
    timeout_s: Annotated[StrictFloat | StrictInt, Field(gt=0, le=300)] = Field(
        default=10.0, alias="timeout-s", description="per SMTP session / HTTP request")

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: object) -> object:
        # YAML 1.1 (PyYAML) reads a bare `on` key as the boolean true: take it back as the `on` field.
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data

    def wants(self, event: str) -> bool:
        """Whether `event` alerts through at least one channel."""
        return event in self.on and (self.smtp is not None or self.webhook is not None)


_CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z?LW#]+$")
_CRON_PRESETS = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@continuous"}
_TEMPLATE_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
TEMPLATE_VARS = ("ds", "ds_nodash", "yyyy", "mm", "dd")


_CRON_FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31"), ("month", "1-12 or JAN-DEC"),
                ("day-of-week", "0-7 or SUN-SAT"))
_CRON_ALLOWED = "5 cron fields like '0 2 * * *', a preset like @daily, or null for manual runs"


def check_schedule(value: str | None) -> str | None:
    """Accept a 5-field cron line that fires (within SCHEDULE_HORIZON_YEARS), an Airflow preset, or None
    (manual triggers only). Cron lines are checked with croniter, the parser Airflow's cron timetables use,
    when it is installed (it comes with Airflow); without it only their shape is checked."""
    if value is None:
        return None
    fields = value.split()
    if value.strip() in _CRON_PRESETS:
        return value.strip()
    if not (len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)):
        raise FieldProblem(f"{names.quote(value)} is not a cron schedule", _CRON_ALLOWED)
    _check_cron(" ".join(fields))
    return value.strip()


def _check_cron(expr: str) -> None:
    try:
        from croniter import CroniterBadDateError, CroniterError, croniter
    except ImportError:  # pragma: no cover - croniter comes with Airflow
        return
    try:
        croniter(expr)
    except (CroniterError, ValueError, KeyError):
        fields = expr.split()
        for i, (name, span) in enumerate(_CRON_FIELDS):  # name the first field that fails on its own
            alone = ["*"] * 5
            alone[i] = fields[i]
            try:
                croniter(" ".join(alone))
            except (CroniterError, ValueError, KeyError):
                raise FieldProblem(f"{names.quote(expr)} is not a valid cron schedule: its {name} field "
                                   f"{names.quote(fields[i], 20)} is out of range or malformed",
                                   f"{name} values {span} (with * , - /), or null for manual runs") from None
        raise FieldProblem(f"{names.quote(expr)} is not a valid cron schedule", _CRON_ALLOWED) from None
    start = datetime.now(UTC)
    horizon = start + timedelta(days=366 * SCHEDULE_HORIZON_YEARS)
    try:
        fires = croniter(expr, start).get_next(datetime)
    except CroniterBadDateError:
        fires = None
    if fires is None or fires > horizon:
        raise FieldProblem(f"{names.quote(expr)} never fires: no date in the next {SCHEDULE_HORIZON_YEARS} years "
                           "matches it (a day that does not exist in its month, like 31 February?)",
                           "a schedule that fires, e.g. '0 2 * * *' or '0 2 28 2 *', or null for manual runs")


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
    rendered = render_image(pattern, date(2026, 1, 1))
    problem = names.check_image(rendered)
    if problem:
        raise FieldProblem(f"image-tag-pattern renders {names.quote(rendered)}, which is not a Docker image "
                           f"reference: it {problem}", "a pattern like vllm/vllm-openai:nightly-{{ ds_nodash }}")
    if not names.image_is_pinned(rendered):
        raise FieldProblem("image-tag-pattern renders an image without a tag", "repo:tag-{{ ds_nodash }}")
    return pattern


def check_image_history(history: dict[date, str]) -> dict[date, str]:
    """Every recorded image must be a Docker image reference, pinned (tag or digest)."""
    for day, image in history.items():
        problem = names.check_image(image)
        if problem:
            raise FieldProblem(f"image {names.quote(image)} for {day} is not a Docker image reference: it {problem}",
                               names.IMAGE_ALLOWED)
        if not names.image_is_pinned(image):
            raise FieldProblem(f"image {image!r} for {day} has no tag", "repo:tag or repo@sha256:digest")
    return history
