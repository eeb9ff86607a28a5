"""Server-log storage: redact secrets, cap the size (head + tail with a marker), zlib-compress.

The head keeps the engine's startup banner and arguments; the tail keeps the crash. Both matter when a
failure is diagnosed, the middle (steady-state request logs) rarely does.
"""

from __future__ import annotations

import hashlib
import os
import re
import zlib
from dataclasses import dataclass

#: Default cap on the *uncompressed* text kept per log (the full text's sha256 is still recorded).
DEFAULT_MAX_BYTES = int(os.environ.get("INFERSWEEP_LOG_MAX_BYTES", str(4 * 1024 * 1024)))
HEAD_FRACTION = 0.25
TRUNCATION_MARKER = "\n[… infersweep: {n} bytes truncated from the middle of this log …]\n"

_SECRET_PATTERNS = (
    re.compile(r"\bhf_[A-Za-z0-9]{20,}\b"),  # Hugging Face user/org tokens
    re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@"),  # user:password@ in URLs
    re.compile(r"(?i)\b((?:hf|hugging_face_hub|huggingface|api|access)_?token\s*[=:]\s*)\S+"),
)
_SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "INFERSWEEP_DB_PASSWORD", "PGPASSWORD")


def redact(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Replace tokens and passwords with `***` (env-var values, hf_ tokens, URL passwords)."""
    for value in (*(os.environ.get(k, "") for k in _SECRET_ENV), *extra_secrets):
        if value and len(value) >= 6:  # short values would blank out ordinary words
            text = text.replace(value, "***")
    text = _SECRET_PATTERNS[0].sub("***", text)
    text = _SECRET_PATTERNS[1].sub(lambda m: f"{m.group(1)}:***@", text)
    return _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}***", text)


@dataclass(frozen=True)
class PackedLog:
    """A log ready to store."""

    content: bytes
    original_bytes: int
    stored_bytes: int
    truncated: bool
    sha256: str
    codec: str = "zlib"


def pack_log(text: str, *, max_bytes: int = DEFAULT_MAX_BYTES, extra_secrets: tuple[str, ...] = ()) -> PackedLog:
    """Redact, cap to `max_bytes` (head + marker + tail) and compress `text`."""
    raw = redact(text, extra_secrets).encode("utf-8", errors="replace")
    original = len(raw)
    digest = hashlib.sha256(raw).hexdigest()
    truncated = original > max_bytes
    if truncated:
        head_n = int(max_bytes * HEAD_FRACTION)
        tail_n = max_bytes - head_n
        marker = TRUNCATION_MARKER.format(n=original - head_n - tail_n).encode()
        # errors="ignore" on decode later drops a split UTF-8 sequence at the cut, never raises.
        raw = raw[:head_n] + marker + raw[original - tail_n:]
    content = zlib.compress(raw, level=6)
    return PackedLog(content, original, len(content), truncated, digest)


def unpack_log(content: bytes, codec: str = "zlib") -> str:
    """The stored log text."""
    if codec != "zlib":
        raise ValueError(f"unknown log codec {codec!r}")
    return zlib.decompress(content).decode("utf-8", errors="ignore")
