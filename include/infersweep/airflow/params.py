"""Trigger params for a sweep DAG, as JSON schema so the UI form is usable and the REST API answers 400.

Allowed values are filled from the config entry at parse time (its seq-lens, TP/EP values and concurrencies),
so a trigger asking for a topology the config does not have is rejected by Airflow before a run exists.

The schema is shaped for Airflow 3.3's trigger form (`FlexibleForm/FieldSelector`): an array with top-level
`examples` is a multi-select offering exactly those values, a scalar with `enum` is a select, and a type
without `null` is required (the form flags it and disables Trigger when emptied). The form does not check
`pattern`, `minLength` or `minimum`; the API does, before a run exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from airflow.sdk import Param
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infersweep.config.adaptive import ADAPTIVE_MODES, MAX_REPEATS

ENGINES = ("sim", "vllm-docker", "vllm-process", "slurm")
#: Airflow validates every Param of every scheduled DAG at parse time. Against draft-07 the metaschema check
#: costs ~0.25 ms instead of ~1.3 ms for the default 2020-12 (vocabularies and dynamic refs), which is
#: the difference between fitting the 2 s fleet parse budget and not. Every keyword used here is draft-07.
_DRAFT = "http://json-schema.org/draft-07/schema#"


def _param(default: Any, **schema: Any) -> Param:
    schema["$schema"] = _DRAFT
    return Param(default, **schema)


#: `repeats` as the form's text field sends it: 1 to MAX_REPEATS (20).
_REPEATS_PATTERN = "^([1-9]|1[0-9]|20)$"

#: List params of integers. The form's multi-select sends its choices as strings (`value: String(option)`
#: in Airflow's `FieldMultiSelect`), so their items also accept the decimal string of an allowed value and
#: `param_values` turns them back into ints before any step reads them.
INT_LIST_PARAMS = ("tp", "ep", "concs", "pp", "dcp_size", "pcp_size")
LIST_PARAMS = ("seq_lens", *INT_LIST_PARAMS)


def _choices(allowed: list[Any], items: dict[str, Any], description: str) -> Param:
    """A list of allowed values: a multi-select on the form, `[]` or null (what the form sends once the
    choices are cleared) means all."""
    schema: dict[str, Any] = {"type": ["array", "null"], "items": items, "uniqueItems": True}
    if allowed:
        schema["examples"] = allowed  # top-level examples: what makes Airflow's form pick a multi-select
        description += " Allowed: " + ", ".join(map(str, allowed)) + "."
    return _param([], description=description, **schema)


def _int_array(values: Iterable[int], description: str) -> Param:
    allowed = sorted(set(values))
    items: dict[str, Any] = (
        {"type": ["integer", "string"], "enum": [*allowed, *map(str, allowed)]} if allowed
        # No config values (the key list of `_form_keys`): any size >= 1, as an int or its decimal string.
        else {"type": ["integer", "string"], "minimum": 1, "pattern": "^[1-9][0-9]*$"}
    )
    return _choices(allowed, items, f"{description} None selected = all.")


def build_params(
    *,
    seq_lens: Iterable[str],
    tps: Iterable[int],
    eps: Iterable[int],
    concs: Iterable[int],
    default_engine: str,
    eval_enabled: bool,
    adaptive: str = "off",
    pps: Iterable[int] = (1,),
    dcps: Iterable[int] = (1,),
    pcps: Iterable[int] = (1,),
) -> dict[str, Param]:
    """The Params of one sweep DAG. Keys are a contract (REST conf and the UI form use them).

    `pp`, `dcp_size` and `pcp_size` appear on the form only for a config with a layout that uses them (a
    choice between sizes); every DAG accepts them as run conf keys (`AdvancedConf`).
    """
    if default_engine not in ENGINES:
        raise ValueError(f"engine {default_engine!r} is not one of {ENGINES}")
    seq = sorted(set(seq_lens))
    layout = {
        name: _int_array(values, f"Only serve groups with these {what} sizes.")
        for name, values, what in (("pp", pps, "pipeline-parallel"), ("dcp_size", dcps, "decode-context-parallel"),
                                   ("pcp_size", pcps, "prefill-context-parallel"))
        if set(values) - {1}
    }
    return {
        "seq_lens": _choices(
            seq, {"type": "string", "enum": seq} if seq else {"type": "string"},
            "Sequence-length scenarios to run. None selected = all.",
        ),
        "tp": _int_array(tps, "Only serve groups with these tensor-parallel sizes."),
        "ep": _int_array(eps, "Only serve groups with these expert-parallel sizes."),
        "dp_attn": _param(
            "any", type="string", enum=["any", "true", "false"],
            description="Only DEP groups (true), only non-DEP groups (false), or both (any).",
        ),
        **layout,
        "concs": _int_array(concs, "Concurrency subset to benchmark."),
        "image": _param(
            None, type=["null", "string"], pattern=r"^[^\s:]+(:[^\s:/]+|@sha256:[0-9a-f]{64})$",
            description="Override the serving image (repo:tag or repo@sha256:digest). Empty = from config "
            "or the image-tag pattern for this logical date.",
        ),
        "engine": _param(default_engine, type="string", enum=list(ENGINES), description="Serving backend."),
        "force": _param(False, type="boolean", description="Re-measure points that already have a result."),
        "reuse_run_id": _param(
            None, type=["null", "string"], minLength=1,
            description="Copy another run's results into this run (with provenance) instead of measuring.",
        ),
        "eval": _param(eval_enabled, type="boolean", description="Run gsm8k at the planner's eval concurrencies."),
        "dry_run": _param(False, type="boolean", description="Plan only: log the group table and start nothing."),
        "adaptive": _param(
            adaptive, type="string", enum=list(ADAPTIVE_MODES),
            description="Which points to measure. off: every concurrency of the ladder (InferenceX parity); "
            "frontier: only points that can still move the Pareto frontier (skips are logged with reasons); slo: "
            "bisect for the largest concurrency meeting the sweep file's SLO targets.",
        ),
        # A decimal string ("3"), not an integer: Airflow 3.3's form renders a type list with a number (or with
        # two non-null types) as no plain text field; `param_values` turns it into an int before any step reads it.
        "repeats": _param(
            None, type=["null", "string"], pattern=_REPEATS_PATTERN,
            description=f"Measure every point this many times on its server (confidence intervals across runs), "
            f"1 to {MAX_REPEATS}. Empty = the sweep file's `repeats`.",
        ),
    }


class AdvancedConf(BaseModel):
    """Run-conf keys for scripts and the demo that are not on the trigger form.

    Every declared Param is deep-copied into every task at parse time (Airflow's operator defaults), so the
    form keeps to the knobs people use; these are validated by the `plan` task instead, before anything starts.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    model: str | None = Field(default=None, min_length=1, description="model override (HF id or local path)")
    eval_limit: int | None = Field(default=None, ge=1, description="gsm8k: first N test questions only")
    sim_time_scale: float | None = Field(default=None, gt=0, description="simulated engine speed-up")
    # Layout filters; on the form too where the config has a choice (see build_params).
    pp: tuple[Annotated[int, Field(ge=1)], ...] = Field(default=(), description="pipeline-parallel sizes")
    dcp_size: tuple[Annotated[int, Field(ge=1)], ...] = Field(default=(), description="decode-context-parallel sizes")
    pcp_size: tuple[Annotated[int, Field(ge=1)], ...] = Field(default=(), description="prefill-context-parallel sizes")


def advanced_conf(params: dict[str, Any]) -> AdvancedConf:
    """The advanced keys of a run's params, validated: a bad value or an unknown key (a typo Airflow would
    otherwise ignore, e.g. `tp_size`) raises one `config_error` naming the key, the problem and the fix."""
    import difflib

    from infersweep.config.schema_errors import describe
    from infersweep.faults.errors import ClassifiedError

    known = sorted({*_form_keys(), *AdvancedConf.model_fields})
    problems = []
    for key in sorted(k for k in params if k not in known):
        # `tp_size` means `tp`, not the similar-looking `pcp_size`: a known key before the first `_` wins.
        head = key.split("_", 1)[0]
        close = [head] if head != key and head in known else difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        problems.append(f"{key}: unknown run conf key (allowed: {hint}{', '.join(known)})")
    try:
        conf = AdvancedConf.model_validate(params)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            message, allowed = describe(err, AdvancedConf, loc)
            field = AdvancedConf.model_fields.get(str(loc[0])) if loc else None
            fix = allowed or (field.description if field else None)
            problems.append(f"{'.'.join(map(str, loc))}: {message}" + (f" (allowed: {fix})" if fix else ""))
    if problems:
        raise ClassifiedError("config_error", "invalid run conf: " + "; ".join(problems))
    return conf


def _form_keys() -> tuple[str, ...]:
    """The trigger-form Params every sweep DAG declares (their values were validated by Airflow already)."""
    return tuple(build_params(seq_lens=(), tps=(), eps=(), concs=(), default_engine="sim", eval_enabled=False))


def param_values(params: dict[str, Any]) -> dict[str, Any]:
    """Plain values from a task context's params (ParamsDict or dict), list params normalised: null (a
    cleared multi-select) is `[]`, and integers chosen on the form (sent as strings) are ints again."""
    values = {k: (v.value if isinstance(v, Param) else v) for k, v in dict(params).items()}
    for key in LIST_PARAMS:
        if key in values and values[key] is None:
            values[key] = []
    for key in INT_LIST_PARAMS:
        if isinstance(values.get(key), list | tuple):
            # Already validated by Airflow against the schema: each item is an int or its decimal string.
            values[key] = list(dict.fromkeys(int(v) for v in values[key]))
    repeats = values.get("repeats")
    if isinstance(repeats, str):  # validated against _REPEATS_PATTERN; an emptied field means the sweep file's
        values["repeats"] = int(repeats) if repeats.strip() else None
    return values
