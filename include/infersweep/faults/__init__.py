"""Failure classes: `classify(exception_or_log_text) -> FailureClass(kind, transient, hint)`, and the one
error base (`InfersweepError(kind, transient, hint)`) every infersweep error derives from."""

from infersweep.faults.classify import (
    UNKNOWN_KIND,
    FailureClass,
    classify,
    failure_text,
    kinds,
    load_corpus,
)
from infersweep.faults.errors import ClassifiedError, InfersweepError

__all__ = ["UNKNOWN_KIND", "ClassifiedError", "FailureClass", "InfersweepError", "classify", "failure_text", "kinds", "load_corpus"]
