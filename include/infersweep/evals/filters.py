"""The two answer-extraction filters of lm-eval's gsm8k task, reimplemented byte-for-byte.

lm-eval's `RegexFilter.apply` does: `findall`, pick `group_select` (-1: the last match); when the
pattern has several groups the match is a tuple and the first non-empty group wins (an all-empty
tuple gives the fallback); then `strip()`; no match gives the fallback "[invalid]". A non-string
response is treated as "". `take_first` then keeps the single response (repeats = 1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FALLBACK = "[invalid]"

STRICT_MATCH_PATTERN = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE_EXTRACT_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"


@dataclass(frozen=True)
class RegexFilter:
    """One lm-eval `regex` filter step: findall, select a match, collapse groups, strip."""

    name: str
    pattern: str
    group_select: int = -1
    fallback: str = FALLBACK

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def __call__(self, response: object) -> str:
        """Return the extracted answer for one response (lm-eval `RegexFilter` semantics)."""
        text = response if isinstance(response, str) else ""
        matches = self._regex.findall(text)  # type: ignore[attr-defined]
        if not matches:
            return self.fallback
        match = matches[self.group_select]
        if isinstance(match, tuple):
            non_empty = [group for group in match if group]
            if not non_empty:
                return self.fallback.strip()
            match = non_empty[0]
        return str(match).strip()


STRICT_MATCH = RegexFilter("strict-match", STRICT_MATCH_PATTERN)
FLEXIBLE_EXTRACT = RegexFilter("flexible-extract", FLEXIBLE_EXTRACT_PATTERN)

#: Filter names in the order lm-eval's gsm8k task declares them (`filter_list`).
FILTERS: tuple[RegexFilter, ...] = (STRICT_MATCH, FLEXIBLE_EXTRACT)
