"""One base for every error infersweep raises on purpose: it carries its failure kind, transience and hint.

`classify()` reads only this protocol for our own errors (and the message corpus for foreign ones), so a
retry decision never depends on which attribute name a module happened to pick.

- `kind`: the failure class (a corpus kind such as `kv_cache_oom`, or our own such as `config_error`);
  None means "not known when raised": classify the message and its cause chain against the corpus.
- `transient`: whether retrying can help. None takes the corpus's answer for `kind` (permanent for a kind
  the corpus does not know: the raiser named it deliberately, so no blind retry). An explicit value
  always wins: an error keeps the transience it declares.
- `hint`: what to do about it, for the attempt's message and the run summary.
"""

from __future__ import annotations


class InfersweepError(Exception):
    """Base of infersweep's errors. Subclasses set `kind`/`transient`/`hint` as class attributes, or pass
    them per instance."""

    kind: str | None = None
    transient: bool | None = None
    hint: str = ""

    def __init__(self, message: str = "", *, kind: str | None = None, transient: bool | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        if transient is not None:
            self.transient = transient
        if hint is not None:
            self.hint = hint


class ClassifiedError(InfersweepError, RuntimeError):
    """An error whose class the raiser knows (e.g. `accuracy_below_threshold` from the eval gate); its
    message starts with the kind."""

    def __init__(self, kind: str, message: str, *, transient: bool | None = None, hint: str | None = None) -> None:
        super().__init__(f"{kind}: {message}", kind=kind, transient=transient, hint=hint)


__all__ = ["ClassifiedError", "InfersweepError"]
