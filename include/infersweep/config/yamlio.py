"""A line-aware, strict YAML reader built on PyYAML's compose API.

`yaml.safe_load` forgets where values came from and silently keeps the last of two duplicate keys. We
compose the node graph instead, build plain Python data from it, and remember the 1-based line of every
key and list item, so validation errors can name `file:line`. Duplicate mapping keys are errors.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infersweep.config.errors import IssueCollector, PathPart, format_path

# libyaml's parser is ~10x faster on the 12k-line master files; the pure-Python one is the fallback.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
        reads.append(Path(path).resolve())
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        issues.add(name, None, "file not found")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        issues.add(name, None, f"cannot read file: {exc}")
        return None
    return parse_yaml(text, name, issues)


def parse_yaml(text: str, file: str, issues: IssueCollector) -> YamlDoc | None:
    """Parse one YAML document. Syntax errors and duplicate keys are reported with their line."""
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            what = str(exc.problem or exc)
            if exc.context and exc.context_mark is not None:
                what += f" ({exc.context} started on line {exc.context_mark.line + 1})"
            # The key path of the construct that broke (where it started, else where parsing stopped).
            at = exc.context_mark or exc.problem_mark
            # An "end of stream" mark sits one line past the last one; name the last line instead.
            last_line = max(1, len(text.splitlines()))
            issues.add(file, min(mark.line + 1, last_line) if mark else None, f"YAML syntax error: {what}",
                       field_path=key_path_at(text, at.line + 1) if at else "",
                       allowed="valid YAML; check indentation, quotes and ':' after keys")
            return None
        except yaml.YAMLError as exc:
            issues.add(file, None, f"YAML error: {exc}")
            return None
        doc = YamlDoc(file=file, data=None)
        if node is not None:
            # Duplicate keys are reported but the document is still returned, so schema errors elsewhere in
            # the same file show up in the same run.
            doc.data = _Builder(loader, doc, issues).build(node, ())
        return doc
    finally:
        loader.dispose()


_KEY_LINE = re.compile(r"""(?P<key>'[^']*'|"[^"]*"|[^\s#'"{\[\]},&*!|>%@`-][^:#]*?|-[^\s:#][^:#]*?)\s*:(?:\s|$)""")


def key_path_at(text: str, line: int) -> str:
    """Best-effort key path of `line` (1-based) from block-style indentation alone, for YAML that does not
    parse: `entries.bad-key.scenarios.fixed-seq-len[0].isl`. Flow collections ({..}, [..]) are not entered."""
    stack: list[tuple[int, PathPart, bool]] = []  # (column, part, is a sequence item)
    for raw in text.splitlines()[:line]:
        rest = raw.lstrip(" ")
        if not rest or rest.startswith("#"):
            continue
        col = len(raw) - len(rest)
        while rest.startswith("- ") or rest == "-":
            # A sequence item: siblings share its column; its parent key may sit at the same column.
            index = 0
            while stack and (stack[-1][0] > col or (stack[-1][0] == col and stack[-1][2])):
                c, part, is_item = stack.pop()
                if c == col and is_item and isinstance(part, int):
                    index = part + 1
            stack.append((col, index, True))
            stripped = rest[1:].lstrip(" ")
            col += len(rest) - len(stripped)
            rest = stripped
        m = _KEY_LINE.match(rest)
        if m:
            while stack and stack[-1][0] >= col:
                stack.pop()
            stack.append((col, m.group("key").strip("'\""), False))
    return format_path([part for _, part, _ in stack])


_UNREAD = object()
#: Deeper than any real config (the master schema nests 7 levels); Python's recursion limit would fail first.
MAX_DEPTH = 64
#: Values an aliased (`*anchor`) node may expand to in all: a billion-laughs file would otherwise build
#: billions of objects. Real configs use a few small anchors.
MAX_ALIAS_VALUES = 100_000


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

    def build(self, node: yaml.Node, path: tuple[PathPart, ...]) -> Any:
        if self._stopped:
            return None
        self.doc.lines.setdefault(path, node.start_mark.line + 1)
        if len(path) > MAX_DEPTH:
            self._stop(node, path, f"nested more than {MAX_DEPTH} levels deep",
                       f"at most {MAX_DEPTH} levels of mappings and lists")
            return None
        repeat = id(node) in self._seen and isinstance(node, yaml.MappingNode | yaml.SequenceNode)
        self._seen.add(id(node))
        if repeat or self._alias_depth:
            # Inside an alias's second (or later) expansion: count what it costs.
            self._alias_values += 1
            if self._alias_values > MAX_ALIAS_VALUES:
                self._stop(node, path, f"YAML aliases expand to more than {MAX_ALIAS_VALUES:,} values",
                           "fewer or smaller *aliases (an alias bomb is refused)")
                return None
        if repeat:
            self._alias_depth += 1
            try:
                return self._build(node, path)
            finally:
                self._alias_depth -= 1
        return self._build(node, path)

    def _forget(self, node: yaml.Node) -> None:
        # PyYAML marks a node "under construction" and leaves the mark when its constructor raises; the next
        # read of the same node would then be reported as a recursive node instead of its real problem.
        getattr(self.loader, "recursive_objects", {}).pop(node, None)

    def _stop(self, node: yaml.Node, path: tuple[PathPart, ...], message: str, allowed: str) -> None:
        """Report one limit and stop building: the rest of such a document is not worth reading."""
        self._stopped = True
        self.issues.add(self.doc.file, node.start_mark.line + 1, message, field_path=format_path(path[:MAX_DEPTH]),
                        allowed=allowed)

    def _build(self, node: yaml.Node, path: tuple[PathPart, ...]) -> Any:
        if id(node) in self._active:
            self.issues.add(self.doc.file, node.start_mark.line + 1, "recursive YAML alias",
                            field_path=format_path(path))
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
                    self.doc.lines[(*path, i)] = item.start_mark.line + 1
                    out.append(self.build(item, (*path, i)))
                return out
            finally:
                self._active.discard(id(node))
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self.issues.add(self.doc.file, node.start_mark.line + 1, f"cannot read value: {exc.problem}",
                            field_path=format_path(path))
            return None
        except ValueError as exc:  # e.g. a timestamp-shaped value that is no date: 2026-13-45
            self._forget(node)
            self.issues.add(self.doc.file, node.start_mark.line + 1, f"cannot read value {node.value!r}: {exc}",
                            field_path=format_path(path), allowed="a real date (YYYY-MM-DD), or quote the value")
            return None

    def _mapping(self, node: yaml.MappingNode, path: tuple[PathPart, ...]) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self._key(key_node, path)
            line = key_node.start_mark.line + 1
            if key in seen:
                self.issues.add(self.doc.file, line, f"duplicate key '{key}' (first defined on line {seen[key]})",
                                field_path=format_path((*path, key)),
                                allowed="each key once per mapping; merge or rename the duplicate")
            else:
                seen[key] = line
        # `<<: *anchor` merges are legal YAML; flatten them only after the duplicate check above, since a
        # key that overrides a merged one is intended, not a duplicate.
        self.loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key is None and key_node.tag != "tag:yaml.org,2002:null":
                continue
            self.doc.lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, (*path, key))
        return out

    def _key(self, key_node: yaml.Node, path: tuple[PathPart, ...]) -> Any:
        # Each key is read once (the duplicate check and the build both ask), so a bad key is reported once.
        found = self._keys.get(id(key_node), _UNREAD)
        if found is _UNREAD:
            found = self._keys[id(key_node)] = self._read_key(key_node, path)
        return found

    def _read_key(self, key_node: yaml.Node, path: tuple[PathPart, ...]) -> Any:
        if not isinstance(key_node, yaml.ScalarNode):
            self.issues.add(self.doc.file, key_node.start_mark.line + 1, "mapping keys must be plain scalars",
                            field_path=format_path(path))
            return None
        try:
            return self.loader.construct_object(key_node, deep=True)
        except ValueError as exc:  # e.g. an image-history key 2026-13-45
            self._forget(key_node)
            self.issues.add(self.doc.file, key_node.start_mark.line + 1,
                            f"cannot read key {key_node.value!r}: {exc}", field_path=format_path(path),
                            allowed="a real date (YYYY-MM-DD), or quote the key")
            return None
