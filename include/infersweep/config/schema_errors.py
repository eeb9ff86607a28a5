"""Turn pydantic `ValidationError`s into `ConfigIssue`s a person can act on.

Pydantic's messages are accurate but generic ("Input should be a valid integer"). We rewrite the common
ones to say what was found and what is allowed, and we look up the YAML line of every error's path.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import re
import types
import typing
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ValidationError

from infersweep.config.errors import IssueCollector, PathPart, format_path
from infersweep.config.yamlio import YamlDoc

M = TypeVar("M", bound=BaseModel)


def validate_yaml(model: type[M], data: Any) -> M:
    """Validate YAML data by its YAML keys only: `docker_url` must not sneak in for `docker-url`."""
    return model.model_validate(data, by_alias=True, by_name=False)


def add_validation_issues(
    issues: IssueCollector,
    exc: ValidationError,
    *,
    doc: YamlDoc,
    base: Sequence[PathPart],
    config_key: str | None,
    model: type[BaseModel],
    shown: Sequence[PathPart] = (),
) -> None:
    """Record every error in `exc`; `base` is where the validated object sits inside `doc`, `shown` is the
    path prefix printed before each error's own path (the config key is printed separately)."""
    errors = [(tuple(p for p in e["loc"] if not _is_pydantic_tag(p)), e) for e in exc.errors(include_url=False)]
    locs = [loc for loc, _ in errors]
    for loc, err in errors:
        # A list whose item failed is also reported "too short"; the item's own error says it better.
        if err["type"] == "too_short" and any(other[: len(loc)] == loc and other != loc for other in locs):
            continue
        message, allowed = describe(err, model, loc)
        issues.add(doc.file, doc.line_of((*base, *loc)), message, config_key=config_key,
                   field_path=format_path((*shown, *loc)), allowed=allowed)


def describe(err: Any, model: type[BaseModel], loc: tuple[PathPart, ...]) -> tuple[str, str | None]:
    """(message, allowed) for one pydantic error dict."""
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    got = show(err.get("input"))
    if kind == "missing":
        return "required key is missing", f"add '{loc[-1]}'" if loc else None
    if kind == "extra_forbidden":
        keys = _model_keys(model, loc[:-1])
        name = str(loc[-1]) if loc else "?"
        close = difflib.get_close_matches(name, keys, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown key '{name}'", hint + ", ".join(keys) if keys else None
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {got}", "a whole number without quotes, e.g. 8"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {got}", "true, false"
    if kind in ("string_type", "str_type"):
        return f"expected a string, got {got}", "text; quote values YAML would read as numbers or dates"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {got}", "a number without quotes, e.g. 0.8"
    if kind in ("tuple_type", "list_type"):
        return f"expected a list, got {got}", "a YAML list, e.g. [a, b] or one '- item' per line"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping, got {got}", "key: value pairs"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt')}, got {got}", f"a value > {ctx.get('gt')}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}, got {got}", f"a value >= {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}, got {got}", f"a value <= {ctx.get('le')}"
    if kind == "less_than":
        return f"must be less than {ctx.get('lt')}, got {got}", f"a value < {ctx.get('lt')}"
    if kind == "literal_error":
        return f"{got} is not allowed", str(ctx.get("expected", "")).replace("'", "") or None
    if kind == "too_short":
        return "must not be empty", "at least one item"
    if kind == "string_too_short":
        return "must not be empty", "a non-empty string"
    if kind == "string_too_long":
        return f"is longer than {ctx.get('max_length')} characters", f"at most {ctx.get('max_length')} characters"
    if kind in ("date_type", "date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact"):
        return f"expected a date, got {got}", "YYYY-MM-DD"
    if kind in ("value_error", "assertion_error"):
        original = ctx.get("error")
        message = getattr(original, "message", None) or str(original or err["msg"])
        if _REDACT.get():
            message = _QUOTED.sub("<value not shown>", message)
        return message, getattr(original, "allowed", None)
    return f"{err['msg']} (got {got})", "see docs/sweep-config.md for this key"


#: Characters of a bad string value quoted in a message.
SHOWN_CHARS = 80
_REDACT: contextvars.ContextVar[bool] = contextvars.ContextVar("infersweep_redact_values", default=False)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


@contextlib.contextmanager
def redacted_values() -> Iterator[None]:
    """Inside the block, messages name keys but never values: for files a sweep file points to (inventory,
    quirks, runners, thresholds), which may be anything on the host, secrets included."""
    token = _REDACT.set(True)
    try:
        yield
    finally:
        _REDACT.reset(token)


def show(value: Any) -> str:
    """A short human rendering of a bad input value (its kind only inside `redacted_values()`)."""
    if _REDACT.get() and value is not None and not isinstance(value, dict | list | tuple | bool):
        return f"a {type(value).__name__} (value not shown: referenced file)"
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # Bounded: a 1 MB value must not become a 1 MB message (CLI, Airflow's import-error text).
        return repr(value) if len(value) <= SHOWN_CHARS else repr(value[:SHOWN_CHARS]) + f"… ({len(value):,} characters)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return str(value)


def _is_pydantic_tag(part: PathPart) -> bool:
    # Union members and validator wrappers appear in locs as tags like `function-after[...]`.
    return isinstance(part, str) and "[" in part and part.endswith("]")


def _model_keys(model: type[BaseModel], loc: Sequence[PathPart]) -> list[str]:
    """Allowed YAML keys of the (nested) model at `loc` inside `model`."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            fields = {f.alias or n: f for n, f in current.model_fields.items()}
            field = fields.get(part)
            current = field.annotation if field else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(f.alias or n for n, f in current.model_fields.items())
    return []


def _unwrap(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if len(args) == 1 else next(
                (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), args[0])
        else:
            return tp
