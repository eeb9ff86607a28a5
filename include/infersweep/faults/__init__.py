"""Failure classes: `classify(exception_or_log_text) -> FailureClass(kind, transient, hint)`."""

from infersweep.faults.classify import (
    UNKNOWN_KIND,
    ClassifiedError,
    FailureClass,
    classify,
    failure_text,
    kinds,
    load_corpus,
)

__all__ = ["UNKNOWN_KIND", "ClassifiedError", "FailureClass", "classify", "failure_text", "kinds", "load_corpus"]
