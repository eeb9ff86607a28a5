"""Trigger params for a sweep DAG, as JSON schema so the UI form is usable and the REST API answers 400.

Enums are filled from the config entry at parse time (its seq-lens, TP/EP values and concurrencies), so a
trigger asking for a topology the config does not have is rejected by Airflow before a run exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from airflow.sdk import Param
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENGINES = ("sim", "vllm-docker", "vllm-process")
#: Airflow validates every Param of every scheduled DAG at parse time. Against draft-07 the metaschema check
#: costs ~0.25 ms instead of ~1.3 ms for the default 2020-12 (vocabularies and dynamic refs), which is
#: the difference between fitting the 2 s fleet parse budget and not. Every keyword used here is draft-07.
_DRAFT = "http://json-schema.org/draft-07/schema#"


def _param(default: Any, **schema: Any) -> Param:
    schema["$schema"] = _DRAFT
    return Param(default, **schema)


def _int_array(values: Iterable[int], description: str) -> Param:
    allowed = sorted(set(values))
    return _param(
        [],
        type="array",
        items={"type": "integer", "enum": allowed} if allowed else {"type": "integer", "minimum": 1},
        uniqueItems=True,
        description=f"{description} Empty = all. Allowed: {allowed}",
    )


def build_params(
    *,
    seq_lens: Iterable[str],
    tps: Iterable[int],
    eps: Iterable[int],
    concs: Iterable[int],
    default_engine: str,
    eval_enabled: bool,
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
        "seq_lens": _param(
            [], type="array", items={"type": "string", "enum": seq} if seq else {"type": "string"},
            uniqueItems=True,
            description=f"Sequence-length scenarios to run. Empty = all. Allowed: {seq}",
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
    """Plain values from a task context's params (ParamsDict or dict)."""
    return {k: (v.value if isinstance(v, Param) else v) for k, v in dict(params).items()}
