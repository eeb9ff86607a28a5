"""A line-aware, strict YAML reader built on PyYAML's compose API.

`yaml.safe_load` forgets where values came from and silently keeps the last of two duplicate keys. We
compose the node graph instead, build plain Python data from it, and remember the 1-based line of every
key and list item, so validation errors can name `file:line`. Duplicate mapping keys are errors.

Config files are input we do not control (a folder anyone can drop a file into, master files fetched from
upstream), so reading one is bounded in size and time and every way it can fail is an issue with the file
(and the line, where there is one), never a traceback: a missing file, a dangling symlink or a symlink loop,
a FIFO or folder where a file should be, a file over the size limit, bytes that are not UTF-8, control
characters, syntax errors, more values than the limit, nesting too deep, alias bombs, numbers too long to
convert, and values PyYAML's constructors choke on (`!!bool maybe`). The limits are listed below and in
docs/reliability.md.
"""

from __future__ import annotations

import codecs
import contextlib
import contextvars
import errno
import gc
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infersweep.config.errors import IssueCollector, PathPart, format_path

# libyaml's parser is ~10x faster on the 12k-line master files; the pure-Python one is the fallback.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: Bytes one config file may hold, checked with stat before the file is opened (and again while reading, for
#: a file that grows). Both InferenceX master files are ~0.5 MB together; a fleet ten times larger is ~5 MB.
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_FILE_BYTES_ENV = "INFERSWEEP_MAX_CONFIG_BYTES"
#: YAML values (scalars, lists, mappings) one file may hold, bounded from its text before it is parsed: each
#: ':', ',', '[', '{', '- ' and '? ' can start at most two values. A dense 4 MB `[1,1,1,...]` (2 M values)
#: took 30 s and 1 GB to load; the nvidia master holds 26k values (bound 35k), a fleet ten times larger 350k.
#: A value costs ~3 us to compose and build, so a file just under the limit still loads in 2-3.5 s.
MAX_VALUES = 1_000_000
MAX_VALUES_ENV = "INFERSWEEP_MAX_CONFIG_VALUES"
#: Deeper than any real config (the master schema nests 7 levels); Python's recursion limit would fail first.
#: libyaml itself refuses nesting past 1,000 levels, which is reported as this limit too.
MAX_DEPTH = 64
#: Values an aliased (`*anchor`) node may expand to in all, merge keys (`<<: *anchor`) included: a
#: billion-laughs file would otherwise build billions of objects. Real configs use a few small anchors.
MAX_ALIAS_VALUES = 100_000
#: Characters in one number. PyYAML converts base-60 integers (`1:2:3`) in time quadratic in their length (a
#: 1 MB one took a minute) and Python refuses decimal integers of more than 4,300 digits anyway.
MAX_NUMBER_CHARS = 4_300
#: Problems the YAML layer lists per file (duplicate keys, unreadable values); the rest are counted in one
#: last issue, so a file of 200,000 duplicate keys does not print 200,000 lines.
MAX_ISSUES = 100
#: Config file names, in any case (`Nightly.YAML`): what `discover` looks at in a folder (the parse cache's
#: folder key lower-cases names the same way).
YAML_SUFFIXES = (".yaml", ".yml")

_SYNTAX_FIX = "valid YAML; check indentation, quotes and ':' after keys"
_DEPTH_FIX = f"at most {MAX_DEPTH} levels of mappings and lists"
_ALIAS_FIX = "fewer or smaller *aliases (an alias bomb is refused)"
_UTF8_FIX = "UTF-8 text; re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"


def is_yaml_name(name: str) -> bool:
    """`x.yaml` or `x.yml` in any case."""
    return name.lower().endswith(YAML_SUFFIXES)


@dataclass
class YamlDoc:
    """Parsed YAML data plus the line of every path in it."""

    file: str
    data: Any
    lines: dict[tuple[PathPart, ...], int] = field(default_factory=dict)

    def line_of(self, path: Sequence[PathPart]) -> int | None:
        """Line of `path`, or of its nearest ancestor that has one (pydantic locs may go deeper)."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get(())


_READS: contextvars.ContextVar[list[Path] | None] = contextvars.ContextVar("infersweep_yaml_reads", default=None)


@contextlib.contextmanager
def track_reads() -> Iterator[list[Path]]:
    """Collect every file `read_yaml` opens inside the block (for caches keyed on their stat)."""
    reads: list[Path] = []
    token = _READS.set(reads)
    try:
        yield reads
    finally:
        _READS.reset(token)


def read_yaml(path: Path, issues: IssueCollector, *, display: str | None = None) -> YamlDoc | None:
    """Read and parse `path`; problems go to `issues` and give None (nothing half-parsed is returned)."""
    name = display or str(path)
    reads = _READS.get()
    if reads is not None:
        # realpath, not Path.resolve(): Python 3.11's resolve() raises RuntimeError on a symlink loop.
        reads.append(Path(os.path.realpath(path)))
    raw = read_config_bytes(Path(path), name, issues)
    if raw is None:
        return None
    text = decode_config(raw, name, issues)
    return None if text is None else parse_yaml(text, name, issues)


def _env_limit(env: str, default: int, file: str, issues: IssueCollector) -> int | None:
    """`default`, or the positive whole number the operator put in `env`; None (and an issue) otherwise."""
    raw = os.environ.get(env, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value > 0:
        return value
    issues.add(file, None, f"{env}={raw!r} is not a positive whole number",
               allowed=f"a whole number such as {default}, or unset it for the default ({default:,})")
    return None


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _size_text(n: int) -> str:
    return f"{n:,} bytes" + (f" ({n / 2**20:.3g} MiB)" if n >= 2**20 else "")


def _regular(st: os.stat_result, limit: int, file: str, issues: IssueCollector) -> bool:
    if not stat.S_ISREG(st.st_mode):
        kind = next((what for test, what in _KINDS if test(st.st_mode)), "not a file")
        issues.add(file, None, f"not a regular file: it is {kind}", allowed="a regular YAML file")
        return False
    if st.st_size > limit:
        issues.add(file, None, f"file is {_size_text(st.st_size)}, more than the limit of {_size_text(limit)}",
                   allowed=f"a smaller file (split it), or raise the limit with {MAX_FILE_BYTES_ENV}=<bytes>")
        return False
    return True


def read_config_bytes(path: Path, file: str, issues: IssueCollector) -> bytes | None:
    """The bytes of config file `path`, or None and an issue: missing, a dangling symlink or a symlink loop,
    unreadable, not a regular file (reading a FIFO would wait forever for a writer), or over the size limit."""
    limit = _env_limit(MAX_FILE_BYTES_ENV, MAX_FILE_BYTES, file, issues)
    if limit is None:
        return None
    try:
        if not _regular(os.stat(path), limit, file, issues):
            return None
        # O_NONBLOCK: a FIFO swapped in after the stat must not block the open either.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as fh:
            if not _regular(os.fstat(fh.fileno()), limit, file, issues):
                return None
            data = fh.read(limit + 1)
    except OSError as exc:
        _read_error(path, file, exc, issues)
        return None
    if len(data) > limit:
        issues.add(file, None, f"file grew past the limit of {_size_text(limit)} while being read",
                   allowed=f"a smaller file (split it), or raise the limit with {MAX_FILE_BYTES_ENV}=<bytes>")
        return None
    return data


def _read_error(path: Path, file: str, exc: OSError, issues: IssueCollector) -> None:
    if isinstance(exc, FileNotFoundError):
        target = None
        with contextlib.suppress(OSError):
            target = os.readlink(path) if os.path.islink(path) else None
        if target is None:
            issues.add(file, None, "file not found")  # no fix: a referencing key supplies its own
        else:
            issues.add(file, None, f"file not found: a dangling symlink to {_short(target)!r}",
                       allowed="point the symlink at an existing file, or remove it")
    elif exc.errno == errno.ELOOP:
        issues.add(file, None, "symlink loop: following its symlinks never reaches a file",
                   allowed="point the symlink at a real file, or remove it")
    elif isinstance(exc, PermissionError):
        issues.add(file, None, "permission denied",
                   allowed="a file (in folders) readable by the user infersweep runs as")
    else:
        issues.add(file, None, f"cannot read file: {exc.strerror or exc}", allowed="a readable YAML file")


_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"),
              (codecs.BOM_UTF16_BE, "UTF-16"))


def decode_config(raw: bytes, file: str, issues: IssueCollector) -> str | None:
    """`raw` as UTF-8 text, or None and an issue naming the first bad byte by offset and line. A UTF-8
    byte-order mark is kept (parse_yaml drops it)."""
    for bom, codec in _WIDE_BOMS:
        if raw.startswith(bom):
            issues.add(file, 1, f"file is {codec} text, not UTF-8 (it starts with a {codec} byte-order mark)",
                       allowed=_UTF8_FIX)
            return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        before = raw[: exc.start].decode("utf-8", "replace")
        issues.add(file, line, f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at byte offset {exc.start:,} is not "
                   "part of a valid UTF-8 character", field_path=key_path_at(before, line), allowed=_UTF8_FIX)
        return None


#: Text that can start a YAML value: see MAX_VALUES.
_VALUE_MARKS = (":", ",", "[", "{", "- ", "-\t", "-\n", "-\r", "? ", "?\t", "?\n", "?\r")


def value_bound(text: str) -> int:
    """An upper bound of the values (nodes) `text` composes to, from a few `str.count`s (~10 ms a MB)."""
    return 1 + 2 * (sum(text.count(mark) for mark in _VALUE_MARKS) + text.endswith(("-", "?")))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Composing and building allocate millions of small objects with no cycles to find, while the cyclic GC
    runs every 700 allocations and now and then walks the whole growing heap: paused, the nvidia master loads
    ~2x faster and a 4 MB file ~3x. Cycles an odd document leaves (a recursive alias) are collected later."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_yaml(text: str, file: str, issues: IssueCollector) -> YamlDoc | None:
    """Parse one YAML document. Syntax errors and duplicate keys are reported with their line; a document
    over a limit (values, depth, aliases) gives None."""
    text = text.removeprefix("\ufeff")  # a UTF-8 byte-order mark, as Windows editors write one
    limit = _env_limit(MAX_VALUES_ENV, MAX_VALUES, file, issues)
    if limit is None:
        return None
    bound = value_bound(text) if 2 * len(text) + 1 > limit else 0
    if bound > limit:
        issues.add(file, None, f"too many YAML values: its ':', ',', '- ', '[' and '{{' allow up to {bound:,}, "
                   f"more than the limit of {limit:,}",
                   allowed=f"a smaller file (split it), or raise the limit with {MAX_VALUES_ENV}=<count>")
        return None
    loader = None
    with _gc_paused():
        try:
            loader = _Loader(text)
            node = loader.get_single_node()
            doc = YamlDoc(file=file, data=None)
            if node is not None:
                # Duplicate keys are reported but the document is still returned, so schema errors elsewhere
                # in the same file show up in the same run; a value that could not be read is not (finish()).
                builder = _Builder(loader, doc, issues)
                doc.data = builder.build(node, ())
                if not builder.finish():
                    return None
            return doc
        except yaml.MarkedYAMLError as exc:
            _syntax_error(text, file, exc, issues)
        except yaml.reader.ReaderError as exc:
            _control_character(text, file, exc, issues)
        except yaml.YAMLError as exc:
            issues.add(file, None, f"YAML error: {_short(str(exc), 200)}", allowed=_SYNTAX_FIX)
        except RecursionError:  # the pure-Python composer recurses once per level and has no limit of its own
            issues.add(file, None, f"nested more than {MAX_DEPTH} levels deep", allowed=_DEPTH_FIX)
        except UnicodeEncodeError as exc:  # lone surrogates, from text decoded with surrogateescape
            line = text.count("\n", 0, exc.start) + 1
            issues.add(file, line, f"not valid Unicode text: {exc.reason} at character {exc.start:,}",
                       field_path=key_path_at(text[: exc.start], line), allowed=_UTF8_FIX)
        finally:
            if loader is not None:
                loader.dispose()
    return None


def _control_character(text: str, file: str, exc: yaml.reader.ReaderError, issues: IssueCollector) -> None:
    # libyaml gives a byte offset, PyYAML's reader a character offset; the character itself is unambiguous:
    # the reader stops at the first unprintable one, so the first occurrence of it is the one.
    char = exc.character if isinstance(exc.character, str) else chr(exc.character) if isinstance(
        exc.character, int) else ""
    at = text.find(char) if char else -1
    if at < 0:
        issues.add(file, None, f"YAML error: {_short(str(exc), 200)}", allowed=_SYNTAX_FIX)
        return
    line = text.count("\n", 0, at) + 1
    issues.add(file, line, f"YAML syntax error: control character U+{ord(char):04X} is not allowed",
               field_path=key_path_at(text, line),
               allowed="printable text; in a double-quoted string write it as an escape, e.g. \\t or \\x07")


def _syntax_error(text: str, file: str, exc: yaml.MarkedYAMLError, issues: IssueCollector) -> None:
    mark = exc.problem_mark or exc.context_mark
    # The key path of the construct that broke (where it started, else where parsing stopped).
    at = exc.context_mark or exc.problem_mark
    # An "end of stream" mark sits one line past the last one; name the last line instead.
    last_line = max(1, len(text.splitlines()))
    line = min(mark.line + 1, last_line) if mark else None
    path = key_path_at(text, at.line + 1) if at else ""
    problem = str(exc.problem or exc)
    if "maximum nesting depth" in problem:  # libyaml's own limit (1,000 levels), reached before ours
        issues.add(file, line, f"nested more than {MAX_DEPTH} levels deep", field_path=path, allowed=_DEPTH_FIX)
        return
    what = _short(problem, 200)
    if exc.context and exc.context_mark is not None:
        what += f" ({exc.context} started on line {exc.context_mark.line + 1})"
    issues.add(file, line, f"YAML syntax error: {what}", field_path=path, allowed=_SYNTAX_FIX)


def _short(text: str, limit: int = 80) -> str:
    """`text`, cut to `limit` characters for a message: a 1 MB key must not make a 1 MB message."""
    return text if len(text) <= limit else f"{text[:limit]}…({len(text):,} characters)"


def _path(path: Sequence[PathPart]) -> str:
    return format_path([_short(p) if isinstance(p, str) else p for p in path])


# One line's key. Possessive `*+`: a plain key runs to the first ':' or '#' and never gives characters back,
# so a line without a key is rejected in linear time. (The lazy `[^:#]*?\s*:` it replaces let the key and
# the `\s*` split every run of blanks both ways: a 160 KB line of them took over 19 s.)
_KEY_LINE = re.compile(r"""(?P<key>'[^']*'|"[^"]*"|[^\s#'"{\[\]},&*!|>%@`-][^:#]*+|-[^\s:#][^:#]*+)\s*:(?:\s|$)""")
_BLANKS = re.compile(" *")
#: `- - - x` items read per line; libyaml refuses deeper nesting anyway.
_ITEMS_PER_LINE = 1_000


def _after_blanks(line: str, pos: int) -> int:
    m = _BLANKS.match(line, pos)
    return m.end() if m else pos


def key_path_at(text: str, line: int) -> str:
    """Best-effort key path of `line` (1-based) from block-style indentation alone, for YAML that does not
    parse: `entries.bad-key.scenarios.fixed-seq-len[0].isl`. Flow collections ({..}, [..]) are not entered.
    Linear in the length of the text, however long its lines."""
    stack: list[tuple[int, PathPart, bool]] = []  # (column, part, is a sequence item)
    for raw in text.splitlines()[:line]:
        pos = _after_blanks(raw, 0)
        if pos == len(raw) or raw[pos] == "#":
            continue
        col = pos
        items = 0
        while raw.startswith("-", pos) and (pos + 1 == len(raw) or raw[pos + 1] == " ") and items < _ITEMS_PER_LINE:
            # A sequence item: siblings share its column; its parent key may sit at the same column.
            items += 1
            index = 0
            while stack and (stack[-1][0] > col or (stack[-1][0] == col and stack[-1][2])):
                c, part, is_item = stack.pop()
                if c == col and is_item and isinstance(part, int):
                    index = part + 1
            stack.append((col, index, True))
            pos = col = _after_blanks(raw, pos + 1)
        m = _KEY_LINE.match(raw, pos)
        if m:
            while stack and stack[-1][0] >= col:
                stack.pop()
            stack.append((col, m.group("key").rstrip().strip("'\""), False))
    return _path([part for _, part, _ in stack][:MAX_DEPTH])


_UNREAD = object()
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_STR_TAG = "tag:yaml.org,2002:str"
#: Mappings and lists are built here, as plain dicts and lists, whatever these standard tags say.
_COLLECTION_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("map", "seq", "set", "omap", "pairs"))
_TAG_FIX = "plain YAML (text, numbers, true/false, lists, mappings); drop the {what}'s !tag"
#: Tags whose SafeConstructor functions return their value (rather than yield a container to fill in).
_SCALAR_TAGS = frozenset({*_NUMBER_TAGS, _TIMESTAMP_TAG, "tag:yaml.org,2002:bool", _NULL_TAG,
                          "tag:yaml.org,2002:binary"})


def _tag_name(tag: str) -> str:
    return _short(tag.replace("tag:yaml.org,2002:", "!!"), 60)


class _Builder:
    def __init__(self, loader: Any, doc: YamlDoc, issues: IssueCollector) -> None:
        self.loader = loader
        self.doc = doc
        self.issues = issues
        self._active: set[int] = set()
        self._seen: set[int] = set()
        self._alias_values = 0
        self._alias_depth = 0
        self._stopped = False
        self._keys: dict[int, Any] = {}
        self._problems = 0
        self._first_unlisted: tuple[int, str] | None = None
        self._holes = False  # a value could not be read: the data is not what the file says

    def build(self, node: yaml.Node, path: tuple[PathPart, ...]) -> Any:
        if self._stopped:
            return None
        self.doc.lines.setdefault(path, node.start_mark.line + 1)
        if len(path) > MAX_DEPTH:
            self._stop(node, path, f"nested more than {MAX_DEPTH} levels deep", _DEPTH_FIX)
            return None
        if isinstance(node, yaml.ScalarNode):
            if self._alias_depth and not self._charge(node, path):
                return None
            return self._scalar(node, path, "value")
        repeat = id(node) in self._seen
        self._seen.add(id(node))
        if (repeat or self._alias_depth) and not self._charge(node, path):
            return None
        if repeat:
            self._alias_depth += 1
            try:
                return self._build(node, path)
            finally:
                self._alias_depth -= 1
        return self._build(node, path)

    def _charge(self, node: yaml.Node, path: tuple[PathPart, ...]) -> bool:
        """A value inside an alias's second (or later) expansion: count what it costs; False past the budget."""
        self._alias_values += 1
        if self._alias_values <= MAX_ALIAS_VALUES:
            return True
        self._stop(node, path, f"YAML aliases expand to more than {MAX_ALIAS_VALUES:,} values", _ALIAS_FIX)
        return False

    def finish(self) -> bool:
        """Count the problems past MAX_ISSUES in one issue. False when the data is not what the file says (a
        limit stopped the build, or a value could not be read): schema checks of it would only add misleading
        follow-on errors such as "expected an integer, got nothing". Duplicate keys alone keep the document."""
        if self._first_unlisted is not None:
            line, path = self._first_unlisted
            self.issues.add(self.doc.file, line, f"{self._problems - MAX_ISSUES:,} more YAML problems from here on "
                            f"are not listed (the first {MAX_ISSUES} are)", field_path=path,
                            allowed="fix the problems listed and load again")
        return not (self._stopped or self._holes)

    def _problem(self, line: int, message: str, path: Sequence[PathPart], allowed: str | None = None, *,
                 hole: bool = True) -> None:
        self._holes = self._holes or hole
        self._problems += 1
        if self._problems <= MAX_ISSUES:
            self.issues.add(self.doc.file, line, message, field_path=_path(path), allowed=allowed)
        elif self._first_unlisted is None:
            self._first_unlisted = (line, _path(path))

    def _forget(self, node: yaml.Node) -> None:
        # PyYAML marks a node "under construction" and leaves the mark when its constructor raises; the next
        # read of the same node would then be reported as a recursive node instead of its real problem.
        getattr(self.loader, "recursive_objects", {}).pop(node, None)

    def _stop(self, node: yaml.Node, path: tuple[PathPart, ...], message: str, allowed: str) -> None:
        """Report one limit and stop building: the rest of such a document is not worth reading."""
        self._stopped = True
        self.issues.add(self.doc.file, node.start_mark.line + 1, message, field_path=_path(path[:MAX_DEPTH]),
                        allowed=allowed)

    def _build(self, node: yaml.Node, path: tuple[PathPart, ...]) -> Any:
        if id(node) in self._active:
            self._problem(node.start_mark.line + 1, "recursive YAML alias", path,
                          allowed="an alias may not refer to a mapping or list that contains it")
            return None
        if node.tag not in _COLLECTION_TAGS:  # `!!python/object/apply:os.system [..]` is not a plain list
            self._problem(node.start_mark.line + 1, "cannot read value: could not determine a constructor for "
                          f"the tag {_short(node.tag, 100)!r}", path, allowed=_TAG_FIX.format(what="value"))
            return None
        if isinstance(node, yaml.MappingNode):
            self._active.add(id(node))
            try:
                return self._mapping(node, path)
            finally:
                self._active.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self._active.add(id(node))
            try:
                out = []
                for i, item in enumerate(node.value):
                    out.append(self.build(item, (*path, i)))  # build() records the item's line
                return out
            finally:
                self._active.discard(id(node))
        return self._scalar(node, path, "value")

    def _scalar(self, node: yaml.Node, path: tuple[PathPart, ...], what: str) -> Any:
        """A scalar value or key, or None and a problem (reported at `path`: a bad key at its mapping)."""
        line = node.start_mark.line + 1
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            self._problem(line, f"{what} is a number of {len(node.value):,} characters, more than "
                          f"{MAX_NUMBER_CHARS:,}", path, allowed=f"a shorter number, or quote the {what} to keep it as text")
            return None
        if node.tag == _STR_TAG:
            return node.value
        try:
            if node.tag in _SCALAR_TAGS:  # straight to the constructor: construct_object's bookkeeping is 2/3 of it
                return self.loader.yaml_constructors[node.tag](self.loader, node)
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self._forget(node)
            self._problem(line, f"cannot read {what}: {_short(str(exc.problem), 200)}", path,
                          allowed=_TAG_FIX.format(what=what))
        except Exception as exc:
            # PyYAML's scalar constructors trust the resolver: `2026-13-45` is a ValueError, `!!bool maybe` a
            # KeyError, `!!int ''` an IndexError, `!!timestamp x` an AttributeError, `1:1:...:1.5` an
            # OverflowError. Each is a problem with this one value, never a traceback.
            self._forget(node)
            reason = _short(str(exc), 200) if isinstance(exc, ValueError | ArithmeticError) else (
                f"not a valid {_tag_name(node.tag)}")
            allowed = (f"a real date (YYYY-MM-DD), or quote the {what}" if node.tag == _TIMESTAMP_TAG else
                       f"a valid {_tag_name(node.tag)} {what}, or quoted text without a !tag")
            self._problem(line, f"cannot read {what} {_short(node.value)!r}: {reason}", path, allowed=allowed)
        return None

    def _mapping(self, node: yaml.MappingNode, path: tuple[PathPart, ...]) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        merges = False
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                merges = True
                continue
            key = self._key(key_node, path)
            line = key_node.start_mark.line + 1
            if key in seen:
                self._problem(line, f"duplicate key '{_short(str(key))}' (first defined on line {seen[key]})",
                              (*path, key), allowed="each key once per mapping; merge or rename the duplicate",
                              hole=False)
            else:
                seen[key] = line
        if merges and not self._merges_fit(node, path):
            return {}
        # `<<: *anchor` merges are legal YAML; flatten them only after the duplicate check above, since a
        # key that overrides a merged one is intended, not a duplicate.
        try:
            self.loader.flatten_mapping(node)
        except yaml.constructor.ConstructorError as exc:  # `<<: 1`: a merge of something not a mapping
            mark = exc.problem_mark or node.start_mark
            self._problem(mark.line + 1, f"cannot merge: {_short(str(exc.problem), 200)}", path,
                          allowed="<<: *anchor or <<: [*a, *b], each naming a mapping")
            node.value = [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None and key_node.tag != _NULL_TAG:
                continue
            self.doc.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, (*path, key))
        return out

    def _merges_fit(self, node: yaml.MappingNode, path: tuple[PathPart, ...]) -> bool:
        """Charge the pairs `flatten_mapping` will copy into `node` to the alias budget, before it copies them:
        `<<: [*a, *a, ...]` of a large mapping is an alias bomb too. False (and a stop) when over a limit."""
        cost = self._merge_cost(node, 0, {}, set())
        if cost == -1:
            self._stop(node, path, f"nested more than {MAX_DEPTH} levels deep", _DEPTH_FIX)
        elif cost == -2:
            self._stop(node, path, "recursive YAML alias in a merge (<<)",
                       "an alias may not refer to a mapping that contains it")
        else:
            self._alias_values += cost
            if self._alias_values <= MAX_ALIAS_VALUES:
                return True
            self._stop(node, path, f"YAML aliases expand to more than {MAX_ALIAS_VALUES:,} values", _ALIAS_FIX)
        return False

    def _merge_cost(self, node: yaml.MappingNode, depth: int, memo: dict[int, int], chain: set[int]) -> int:
        """Pairs merged into `node`, theirs included; -1 past MAX_DEPTH, -2 for a mapping that merges itself."""
        if depth > MAX_DEPTH:
            return -1
        chain.add(id(node))
        cost = 0
        try:
            for key_node, value_node in node.value:
                if key_node.tag != _MERGE_TAG:
                    continue
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        continue  # flatten_mapping reports it
                    if id(src) in chain:
                        return -2
                    if id(src) not in memo:
                        inner = self._merge_cost(src, depth + 1, memo, chain)
                        if inner < 0:
                            return inner
                        memo[id(src)] = len(src.value) + inner
                    cost += memo[id(src)]
                    if cost > MAX_ALIAS_VALUES:
                        return cost
            return cost
        finally:
            chain.discard(id(node))

    def _key(self, key_node: yaml.Node, path: tuple[PathPart, ...]) -> Any:
        # Each key is read once (the duplicate check and the build both ask), so a bad key is reported once.
        found = self._keys.get(id(key_node), _UNREAD)
        if found is _UNREAD:
            found = self._keys[id(key_node)] = self._read_key(key_node, path)
        return found

    def _read_key(self, key_node: yaml.Node, path: tuple[PathPart, ...]) -> Any:
        if not isinstance(key_node, yaml.ScalarNode):
            self._problem(key_node.start_mark.line + 1, "mapping keys must be plain scalars", path,
                          allowed="a text or number key; a list or mapping cannot be a key")
            return None
        return self._scalar(key_node, path, "key")
