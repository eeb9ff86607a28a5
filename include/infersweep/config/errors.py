"""One error type for every bad config: it carries all the issues found, each pinned to file and line.

Loading never stops at the first problem. Every loader collects `ConfigIssue`s and raises a single
`ConfigError` at the end, so a user fixes a broken sweep in one round trip instead of one per error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from infersweep.faults.errors import InfersweepError

PathPart = str | int


def format_path(path: Sequence[PathPart]) -> str:
    """`("scenarios", "fixed-seq-len", 0, "isl")` → `scenarios.fixed-seq-len[0].isl`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in one config file.

    `config_key` is the top-level InferenceX config key (or the sweep-file section) the problem is in;
    `field_path` is the path inside it; `allowed` says what would have been accepted (the fix).
    """

    file: str
    line: int | None
    config_key: str | None
    field_path: str
    message: str
    allowed: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        parts = [where]
        if self.config_key:
            parts.append(self.config_key)
        if self.field_path:
            parts.append(self.field_path)
        text = ": ".join(parts) + f": {self.message}"
        if self.allowed:
            text += f" (allowed: {self.allowed})"
        return text

    def sort_key(self) -> tuple[str, int, str]:
        return (self.file, self.line or 0, self.field_path)


class ConfigError(InfersweepError, ValueError):
    """Bad configuration: every issue found, in file/line order.

    `failure_kind` lets `infersweep.faults.classify` fail an Airflow task on it at once: retrying cannot
    fix a config file, and a retry of the plan task would only repeat the same message.
    """

    kind = "config_error"
    transient = False

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = sorted(issues, key=ConfigIssue.sort_key)
        n = len(self.issues)
        head = f"{n} configuration error{'s' if n != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {issue}" for issue in self.issues)]))


class IssueCollector:
    """Accumulates issues while loading; `raise_if_any()` turns them into one ConfigError."""

    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []

    def add(
        self,
        file: str | Path,
        line: int | None,
        message: str,
        *,
        config_key: str | None = None,
        field_path: Sequence[PathPart] | str = "",
        allowed: str | None = None,
    ) -> None:
        path = field_path if isinstance(field_path, str) else format_path(field_path)
        self.issues.append(ConfigIssue(str(file), line, config_key, path, message, allowed))

    def extend(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues.extend(issues)

    def __bool__(self) -> bool:
        return bool(self.issues)

    def raise_if_any(self) -> None:
        if self.issues:
            raise ConfigError(self.issues)
