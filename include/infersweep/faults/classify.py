"""Classify a failure (exception or log text) into a typed class that decides retries.

The patterns are data (`corpus.yaml`, with the public source of every example), so adding a failure
mode is a data change with a replayed example, not a code change.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from infersweep.faults.errors import InfersweepError

UNKNOWN_KIND = "unknown"
#: Unknown failures get exactly one retry (the issue's rule): a flake passes, a bug fails fast enough.
UNKNOWN_MAX_RETRIES = 1
#: Text longer than this is scanned as head + tail: root causes sit at the end of a log, banners at the start.
_SCAN_HEAD, _SCAN_TAIL = 32 * 1024, 256 * 1024


@dataclass(frozen=True)
class FailureClass:
    """What failed and whether retrying can help.

    `evidence` is the line that matched (for the attempt's message excerpt); `max_retries` caps retries
    for classes that are only retried a bounded number of times (None = the task's own retry budget).
    """

    kind: str
    transient: bool
    hint: str = ""
    evidence: str = ""
    max_retries: int | None = None

    @property
    def permanent(self) -> bool:
        return not self.transient


class _Example(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    source: str = Field(min_length=3)


class _Class(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    transient: bool
    hint: str
    patterns: list[str] = Field(min_length=1)
    examples: list[_Example] = Field(min_length=1)
    max_retries: int | None = Field(default=None, ge=0)


class Corpus(BaseModel):
    """The validated corpus file."""

    model_config = ConfigDict(extra="forbid")
    version: int
    classes: list[_Class]

    def compiled(self) -> list[tuple[_Class, re.Pattern[str]]]:
        return [(c, re.compile("|".join(f"(?:{p})" for p in c.patterns), re.IGNORECASE)) for c in self.classes]


@functools.cache
def load_corpus() -> Corpus:
    """The packaged corpus (validated once; a bad corpus is a packaging bug and fails loudly)."""
    text = resources.files("infersweep.faults").joinpath("corpus.yaml").read_text(encoding="utf-8")
    corpus = Corpus.model_validate(yaml.safe_load(text))
    kinds = [c.kind for c in corpus.classes]
    dupes = {k for k in kinds if kinds.count(k) > 1}
    if dupes or UNKNOWN_KIND in kinds:
        raise ValueError(f"faults/corpus.yaml: duplicate or reserved kinds {sorted(dupes | {UNKNOWN_KIND} & set(kinds))}")
    return corpus


@functools.cache
def _compiled() -> list[tuple[_Class, re.Pattern[str]]]:
    return load_corpus().compiled()


def kinds() -> dict[str, bool]:
    """Every known kind and whether it is transient (plus `unknown`)."""
    return {c.kind: c.transient for c in load_corpus().classes} | {UNKNOWN_KIND: True}


def failure_text(error: BaseException | str) -> str:
    """The text to classify: message, type names and the whole cause/context chain (and any log tail)."""
    if isinstance(error, str):
        return error
    parts: list[str] = []
    seen: set[int] = set()
    exc: BaseException | None = error
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}")
        log_tail = getattr(exc, "log_tail", "")
        if log_tail and log_tail not in str(exc):
            parts.append(str(log_tail))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


def _declared(error: InfersweepError, kind: str) -> FailureClass:
    corpus = {c.kind: c for c in load_corpus().classes}.get(kind)
    transient = error.transient
    if transient is None:
        transient = corpus.transient if corpus is not None else False
    hint = error.hint or (corpus.hint if corpus is not None else f"raised as {kind!r} by infersweep")
    max_retries = corpus.max_retries if corpus is not None else None
    if corpus is None and transient:
        max_retries = UNKNOWN_MAX_RETRIES  # a kind the corpus has no budget for: one retry, like unknown
    return FailureClass(kind, transient, hint, str(error)[:500], max_retries)


def _window(text: str) -> str:
    if len(text) <= _SCAN_HEAD + _SCAN_TAIL:
        return text
    return text[:_SCAN_HEAD] + "\n" + text[-_SCAN_TAIL:]


def _line_at(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start: end if end != -1 else len(text)].strip()[:500]


def classify(error: BaseException | str | Any) -> FailureClass:
    """Classify an exception (with its cause chain) or a log text; unknown failures are retried once.

    Our own errors are read through their protocol (`InfersweepError.kind/transient/hint`): a declared
    transience always wins, a corpus kind brings the corpus's semantics otherwise. An `InfersweepError`
    without a kind, and any foreign exception, is classified by its text.
    """
    if isinstance(error, InfersweepError) and error.kind:
        return _declared(error, error.kind)
    text = _window(failure_text(error if isinstance(error, BaseException | str) else str(error)))
    for cls, pattern in _compiled():
        m = pattern.search(text)
        if m:
            return FailureClass(cls.kind, cls.transient, cls.hint, _line_at(text, m.start()), cls.max_retries)
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    return FailureClass(
        UNKNOWN_KIND, True, "No known pattern matched; retried once. Add the message to faults/corpus.yaml.",
        last[:500], UNKNOWN_MAX_RETRIES,
    )
