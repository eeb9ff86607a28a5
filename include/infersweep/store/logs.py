"""Server-log storage: redact secrets, cap the size (head + tail with a marker), zlib-compress.

The head keeps the engine's startup banner and arguments; the tail keeps the crash. Both matter when a
failure is diagnosed, the middle (steady-state request logs) rarely does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import zlib
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

#: Default cap on the *uncompressed* text kept per log (the full text's sha256 is still recorded).
DEFAULT_MAX_BYTES = int(os.environ.get("INFERSWEEP_LOG_MAX_BYTES", str(4 * 1024 * 1024)))
HEAD_FRACTION = 0.25
TRUNCATION_MARKER = "\n[… infersweep: {n} bytes truncated from the middle of this log …]\n"

_SECRET_PATTERNS = (
    re.compile(r"\bhf_[A-Za-z0-9]{20,}\b"),  # Hugging Face user/org tokens
    re.compile(r"(?<=://)([^/\s:@]+):([^/\s@]+)@"),  # user:password@ in URLs
    re.compile(r"(?i)\b((?:hf|hugging_face_hub|huggingface|api|access)_?token\s*[=:]\s*)\S+"),
)
_SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN", "INFERSWEEP_DB_PASSWORD", "PGPASSWORD")
#: Env vars holding URLs whose password must never be shown (the results DB, Airflow connections).
_SECRET_URL_ENV = ("INFERSWEEP_DB_URL", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
_CONN_ENV_PREFIX = "AIRFLOW_CONN_"
#: Shorter values would blank out ordinary words.
_MIN_SECRET_LEN = 6

#: Credentials resolved at run time (e.g. the HF token from an Airflow connection, which is not in the env).
_REMEMBERED: set[str] = set()


def remember_secret(value: str | None) -> None:
    """Mask `value` from now on: in every `redact()` pass and, inside Airflow, in the task log (its secrets
    masker). Call it wherever a credential is read from somewhere other than the environment."""
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    _REMEMBERED.add(value)
    if "airflow.sdk" in sys.modules:  # only inside Airflow processes; the CLI never pays for the import
        try:
            from airflow.sdk.log import mask_secret

            mask_secret(value)
        except Exception:  # noqa: S110  # masking in Airflow's log is extra; our own redaction still applies
            pass


def _url_password(url: str) -> str | None:
    """The password in a URL, or in an Airflow connection given as JSON (`AIRFLOW_CONN_X='{"password": ..}'`)."""
    if url.lstrip().startswith("{"):
        try:
            password = json.loads(url).get("password")
        except (ValueError, AttributeError):
            return None
        return str(password) if password else None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def secret_values() -> list[str]:
    """Every known secret value: credential env vars, passwords inside DB/connection URLs, remembered ones."""
    values = [os.environ.get(k, "") for k in _SECRET_ENV]
    for name, value in os.environ.items():
        if name in _SECRET_URL_ENV or name.startswith(_CONN_ENV_PREFIX):
            values.append(_url_password(value) or "")
    values.extend(_REMEMBERED)
    # Longest first, so a secret that contains another is replaced whole.
    return sorted({v for v in values if len(v) >= _MIN_SECRET_LEN}, key=len, reverse=True)


def redact(text: str, extra_secrets: tuple[str, ...] = ()) -> str:
    """Replace tokens and passwords with `***` (known secret values, hf_ tokens, URL passwords)."""
    for value in (*secret_values(), *extra_secrets):
        if value and len(value) >= _MIN_SECRET_LEN:
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
