"""Names and references that leave the config file: Airflow DAG ids and tags, Docker image references, model
ids, node names, filesystem paths and Docker engine URLs.

Each `check_*` function returns a short problem phrase (e.g. "contains a space") or None; the caller turns it
into a message with the key it belongs to and the fix (the `*_ALLOWED` texts). Problems are found at load
time, so a bad value is refused by `load_sweep` / `infersweep plan` instead of by Airflow, Docker or a shell
on a GPU node. Offending values are quoted with `quote()`: ASCII-escaped and cut to QUOTE_MAX characters.

The rules, and why:

- config key → DAG id: Airflow's `^[A-Za-z0-9_.-]+$` (ASCII only here; Airflow also takes Unicode letters),
  at most 250 characters (Airflow's ID_LEN and the store's config_key column);
- model-prefix, runner, precision → DAG tags (Airflow: at most 100 characters): letters, digits, '-', '_',
  '.', ':' (runner labels such as `cluster:b300-nv`), starting with a letter or digit; precision at most 20
  (the results store's column);
- framework: one of KNOWN_FRAMEWORKS, every framework of the InferenceX master files (upstream's schema
  takes any string; its launch scripts and our recipes dispatch on these names, so a typo would run nothing);
- image: Docker's reference grammar (distribution/reference), plus the enroot/pyxis form
  `registry#path:tag` that InferenceX's Slurm runners use (`nvcr.io#nvidia/...`);
- model: a Hugging Face repo id (`org/name`, or a legacy bare `name`), or an absolute local path;
- node name: a hostname-like label (it lands in container names and lease rows);
- hf-home: an absolute path (it is bind-mounted into the container, and Docker takes only absolute sources);
- docker-url: no shell syntax, no '..' segment, no host starting with '-' (docker-py hands ssh:// hosts to
  the ssh binary, which would read `-oProxyCommand=...` as an option).
"""

from __future__ import annotations

import difflib
import re

#: Airflow's longest DAG id (ID_LEN); also the store's config_key column.
DAG_ID_MAX = 250
#: Airflow's longest DAG tag (TAG_MAX_LEN); also the store's model_prefix and runner columns.
TAG_MAX = 100
#: The results store's precision column.
PRECISION_MAX = 20
#: Characters of an offending value shown in a message.
QUOTE_MAX = 60
#: Docker's longest repository name (NameTotalLengthMax), and the store's image column for the whole reference.
IMAGE_NAME_MAX = 255
IMAGE_REF_MAX = 500
#: Hugging Face's longest repo name (huggingface_hub.utils.validate_repo_id), per part of org/name.
HF_NAME_MAX = 96
#: The store's model column (an HF id or a local path).
MODEL_MAX = 500
#: The store's node column.
NODE_NAME_MAX = 200
#: Linux PATH_MAX.
PATH_MAX = 4096

#: Every `framework` of the InferenceX master files (commits 1ef98e3ed and 843c6254f). Upstream's schema
#: takes any string, but its runner scripts pick `benchmarks/*_<framework>.sh` and our recipes dispatch on
#: the name, so an unknown one (a typo like `vlm`) would only fail on a booked node.
KNOWN_FRAMEWORKS: tuple[str, ...] = (
    "atom", "atom-disagg", "dynamo-sglang", "dynamo-trt", "dynamo-vllm", "llmd-vllm", "sglang", "sglang-disagg",
    "tilert", "trt", "vllm", "vllm-disagg",
)

DAG_ID_ALLOWED = f"letters, digits, '-', '_' and '.', at most {DAG_ID_MAX} characters (an Airflow DAG id)"
IMAGE_ALLOWED = ("[registry[:port]/]path[:tag][@sha256:digest] with a lowercase path and no spaces or shell "
                 "characters, e.g. vllm/vllm-openai:v0.11.0")
MODEL_ALLOWED = ("a Hugging Face repo id org/name (letters, digits, '-', '_', '.'), or an absolute local path "
                 "without '..', spaces or shell characters")
NODE_NAME_ALLOWED = (f"a hostname-like name: letters, digits, '-', '_', '.', starting with a letter or digit, at "
                     f"most {NODE_NAME_MAX} characters, e.g. h200-cw-00")
ABS_PATH_ALLOWED = "an absolute path on the node without '..', spaces or shell characters, e.g. /mnt/hf"
DOCKER_URL_ALLOWED = ("unix:///var/run/docker.sock, ssh://user@host or tcp://host:2376, without spaces, "
                      "shell characters or '..'")


def tag_allowed(max_len: int = TAG_MAX, example: str = "") -> str:
    """The fix for a bad DAG-tag value."""
    tail = f", e.g. {example}" if example else ""
    return (f"letters, digits, '-', '_', '.', ':', starting with a letter or digit, at most {max_len} "
            f"characters (an Airflow DAG tag){tail}")


def framework_allowed(name: str) -> str:
    """The fix for an unknown framework: the closest known names first, then all of them."""
    close = difflib.get_close_matches(name, KNOWN_FRAMEWORKS, n=2, cutoff=0.6)
    prefix = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return prefix + ", ".join(KNOWN_FRAMEWORKS)


def quote(value: str, limit: int = QUOTE_MAX) -> str:
    """`value` for a message: ASCII-escaped repr of at most `limit` characters, '...' when cut."""
    return ascii(value[:limit]) + ("..." if len(value) > limit else "")


#: Characters a POSIX shell gives a meaning to (and line breaks): never part of a name we pass on.
SHELL_CHARS = frozenset(";|&$`'\"<>()\\{}*?[]!#~^\n\r")
_SPACES = {" ": "a space", "\t": "a tab", "\n": "a line break", "\r": "a carriage return"}


def describe_char(c: str) -> str:
    """`c` for a message: 'a space', "';' (shell syntax)", 'the non-ASCII character U+00E9'."""
    if c in _SPACES:
        return _SPACES[c]
    if not c.isascii():
        return f"the non-ASCII character U+{ord(c):04X}"
    if not c.isprintable() or c.isspace():
        return f"the control character U+{ord(c):04X}"
    if c in SHELL_CHARS:
        return f"'{c}' (shell syntax)"
    return f"'{c}'"


def first_bad_char(value: str, allowed: re.Pattern[str]) -> str | None:
    """The first character of `value` that `allowed` (a one-character pattern) refuses, described."""
    for c in value:
        if not allowed.fullmatch(c):
            return describe_char(c)
    return None


def short_int(value: int) -> str:
    """An integer for a message: in full up to 24 digits, else its first 12 digits and its length."""
    text = str(value)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


def _too_long(value: str, limit: int) -> str | None:
    return f"is {len(value):,} characters long, more than {limit}" if len(value) > limit else None


# -- Airflow ---------------------------------------------------------------------------------------------------
_DAG_ID_CHAR = re.compile(r"[A-Za-z0-9_.-]")
_TAG_CHAR = re.compile(r"[A-Za-z0-9_.:-]")


def check_dag_id(key: str) -> str | None:
    """A config key becomes an Airflow DAG id: `^[A-Za-z0-9_.-]+$`, at most 250 characters."""
    if not key:
        return "is empty"
    bad = first_bad_char(key, _DAG_ID_CHAR)
    if bad:
        return f"contains {bad}"
    return _too_long(key, DAG_ID_MAX)


def check_tag(value: str, max_len: int = TAG_MAX) -> str | None:
    """model-prefix, runner, framework and precision become Airflow DAG tags (at most 100 characters)."""
    if not value:
        return "is empty"
    bad = first_bad_char(value, _TAG_CHAR)
    if bad:
        return f"contains {bad}"
    if not value[0].isalnum():
        return f"starts with {describe_char(value[0])}"
    return _too_long(value, max_len)


def check_framework(name: str) -> str | None:
    """An InferenceX framework name (KNOWN_FRAMEWORKS)."""
    return None if name in KNOWN_FRAMEWORKS else "is not an InferenceX framework"


# -- Docker image references -------------------------------------------------------------------------------------
# distribution/reference's grammar (reference/regexp.go), ASCII only.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?",
    re.ASCII)
_REGISTRY = re.compile(_DOMAIN, re.ASCII)
_NAME_RE = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*", re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
_IMAGE_CHAR = re.compile(r"[A-Za-z0-9_.:/@#+\[\]-]")


def _split_enroot(ref: str) -> tuple[str | None, str]:
    """`nvcr.io#nvidia/x:1` (enroot/pyxis, as InferenceX's Slurm runners write images) → ('nvcr.io', 'nvidia/x:1')."""
    if "#" in ref:
        registry, _, rest = ref.partition("#")
        return registry, rest
    return None, ref


def check_image(ref: str) -> str | None:
    """A Docker image reference ([registry[:port]/]path[:tag][@digest]), or the enroot `registry#path:tag` form."""
    if not ref:
        return "is empty"
    bad = first_bad_char(ref, _IMAGE_CHAR)
    if bad:
        return f"contains {bad}"
    long = _too_long(ref, IMAGE_REF_MAX)
    if long:
        return long
    registry, rest = _split_enroot(ref)
    if registry is not None and not _REGISTRY.fullmatch(registry):
        return f"has '#' after {quote(registry, 40)}, which is not a registry host (enroot form: registry#path:tag)"
    if "#" in rest:
        return "contains more than one '#'"
    m = _REFERENCE.fullmatch(rest)
    if m is None:
        return _why_not_a_reference(rest)
    if len(m.group("name")) + (len(registry) + 1 if registry else 0) > IMAGE_NAME_MAX:
        return f"has a repository name longer than {IMAGE_NAME_MAX} characters"
    return None


def _why_not_a_reference(rest: str) -> str:
    """What is wrong with a reference the grammar refused (digest, tag, or repository path)."""
    name_tag, at, digest = rest.partition("@")
    if at and not _DIGEST_RE.fullmatch(digest):
        return "has a malformed digest (a digest is sha256: and 64 hex digits)"
    name, tag = name_tag, None
    if ":" in name_tag.rsplit("/", 1)[-1]:
        name, _, tag = name_tag.rpartition(":")
    if tag is not None and not _TAG_RE.fullmatch(tag):
        if len(tag) > 128:
            return "has a tag longer than 128 characters"
        return (f"has the tag {quote(tag, 40)}; a tag starts with a letter, digit or '_', followed by those, "
                "'.' or '-'")
    if _NAME_RE.fullmatch(name.lower()):
        return "has upper-case letters in its repository path (Docker repository paths are lowercase)"
    return "does not follow Docker's reference grammar"


def image_is_pinned(ref: str) -> bool:
    """Whether a valid reference (`check_image(ref) is None`) names a tag or a digest."""
    m = _REFERENCE.fullmatch(_split_enroot(ref)[1])
    return m is not None and (m.group("tag") is not None or m.group("digest") is not None)


# -- models and paths -------------------------------------------------------------------------------------------
_HF_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?", re.ASCII)
_PATH_CHAR = re.compile(r"[A-Za-z0-9_.+@=,:/-]")


def _traverses(parts: list[str]) -> str | None:
    if ".." in parts:
        return "has a '..' segment (it would climb out of its folder)"
    return None


def check_model(model: str) -> str | None:
    """A Hugging Face repo id (`org/name` or a legacy bare `name`), or an absolute local path."""
    if not model:
        return "is empty"
    bad = first_bad_char(model, _PATH_CHAR)
    if bad:
        return f"contains {bad}"
    parts = model.split("/")
    traversal = _traverses(parts)
    if traversal:
        return traversal
    if model.startswith("/"):
        if "" in parts[1:] or "." in parts:
            return "is not a clean absolute path (empty or '.' segment)"
        return _too_long(model, MODEL_MAX)
    if len(parts) > 2:
        return (f"has {len(parts) - 1} '/' separators: a Hugging Face repo id is org/name, and a local path must "
                "be absolute")
    for part in parts:
        if not _HF_PART.fullmatch(part):
            return (f"is not a Hugging Face repo id: {quote(part, 40)} must start and end with a letter, digit "
                    "or '_'")
        if "--" in part or ".." in part:
            return f"is not a Hugging Face repo id: {quote(part, 40)} contains '--' or '..'"
        if len(part) > HF_NAME_MAX:
            return f"is not a Hugging Face repo id: a part is {len(part)} characters long, more than {HF_NAME_MAX}"
    return None


_NODE_CHAR = re.compile(r"[A-Za-z0-9_.-]")


def check_node_name(name: str) -> str | None:
    """An inventory node's name: hostname-like (it becomes part of container names and lease rows)."""
    if not name:
        return "is empty"
    if "/" in name or ".." in name:
        return "is a path ('/' or '..'), not a name"
    bad = first_bad_char(name, _NODE_CHAR)
    if bad:
        return f"contains {bad}"
    if not name[0].isalnum():
        return f"starts with {describe_char(name[0])}"
    return _too_long(name, NODE_NAME_MAX)


def check_abs_path(path: str) -> str | None:
    """An absolute path on a node (hf-home): no '..' segment, spaces or shell characters."""
    if not path:
        return "is empty"
    bad = first_bad_char(path, _PATH_CHAR)
    if bad:
        return f"contains {bad}"
    if not path.startswith("/"):
        return "is not an absolute path (Docker bind-mounts only absolute paths)"
    return _traverses(path.split("/")) or _too_long(path, PATH_MAX)


_URL_CHAR = re.compile(r"[A-Za-z0-9_.:/@%+=\[\]-]")


def check_docker_url(url: str) -> str | None:
    """A Docker engine URL (the scheme is checked by the caller): no shell syntax, '..' or option-like host."""
    bad = first_bad_char(url, _URL_CHAR)
    if bad:
        return f"contains {bad}"
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None  # the caller reports the missing scheme
    parts = rest.split("/")
    traversal = _traverses(parts)
    if traversal:
        return traversal
    if scheme in ("unix", "npipe"):
        return None
    host = parts[0].rsplit("@", 1)[-1]
    if not host or host.startswith(":"):
        return "has no host"
    if host.startswith("-") or parts[0].startswith("-"):
        return "has a host starting with '-' (ssh would read it as an option)"
    return None


__all__ = [
    "ABS_PATH_ALLOWED", "DAG_ID_ALLOWED", "DAG_ID_MAX", "DOCKER_URL_ALLOWED", "IMAGE_ALLOWED", "KNOWN_FRAMEWORKS",
    "MODEL_ALLOWED", "NODE_NAME_ALLOWED", "PRECISION_MAX", "TAG_MAX", "check_abs_path", "check_dag_id",
    "check_docker_url", "check_framework", "check_image", "check_model", "check_node_name", "check_tag",
    "describe_char", "framework_allowed", "image_is_pinned", "quote", "short_int", "tag_allowed",
]
