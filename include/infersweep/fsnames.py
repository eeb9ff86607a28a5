"""File-name components from ids we do not control (DAG ids, run ids, serve-group names)."""

from __future__ import annotations

import re

# `\w` is str.isalnum() plus "_" (Unicode by default, [A-Za-z0-9_] under re.ASCII).
_UNSAFE_CHAR = re.compile(r"[^\w.-]")
_UNSAFE_RUN = re.compile(r"[^\w.-]+")
_UNSAFE_CHAR_ASCII = re.compile(r"[^\w.-]", re.ASCII)
_UNSAFE_RUN_ASCII = re.compile(r"[^\w.-]+", re.ASCII)


def safe_filename(
    text: str, *, max_len: int | None = 120, ascii_only: bool = False, squeeze: bool = False,
    fallback: str | None = None,
) -> str:
    """`text` as one file-name component: each character other than a letter, digit, '-', '_' or '.'
    becomes '_'.

    The options exist because files are found again by recomputing their names, so each caller keeps the
    names it has always produced:

    - `ascii_only`: only ASCII letters and digits are kept (otherwise Unicode ones are too);
    - `squeeze`: a run of replaced characters becomes a single '_';
    - `fallback`: strip leading and trailing '_' and return `fallback` if nothing is left;
    - `max_len`: cut the result to this many characters (None: no limit).
    """
    if ascii_only:
        pattern = _UNSAFE_RUN_ASCII if squeeze else _UNSAFE_CHAR_ASCII
    else:
        pattern = _UNSAFE_RUN if squeeze else _UNSAFE_CHAR
    out = pattern.sub("_", text)
    if fallback is not None:
        out = out.strip("_") or fallback
    return out if max_len is None else out[:max_len]


__all__ = ["safe_filename"]
