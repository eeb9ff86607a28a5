"""The line-aware YAML reader."""

from __future__ import annotations

from infersweep.config.errors import IssueCollector
from infersweep.config.yamlio import parse_yaml


def test_lines_of_keys_and_items() -> None:
    """Every key and list item records its 1-based line; deeper paths fall back to the nearest ancestor."""
    issues = IssueCollector()
    doc = parse_yaml("a:\n  b: 1\n  c:\n  - x\n  - {d: 2}\n", "f.yaml", issues)
    assert doc is not None and not issues
    assert doc.data == {"a": {"b": 1, "c": ["x", {"d": 2}]}}
    assert doc.line_of(("a", "b")) == 2
    assert doc.line_of(("a", "c", 1)) == 5
    assert doc.line_of(("a", "c", 1, "d", "missing")) == 5


def test_duplicate_keys_are_reported_with_both_lines() -> None:
    issues = IssueCollector()
    parse_yaml("a: 1\nb: 2\na: 3\n", "f.yaml", issues)
    assert [str(i) for i in issues.issues] == [
        "f.yaml:3: a: duplicate key 'a' (first defined on line 1) "
        "(allowed: each key once per mapping; merge or rename the duplicate)"]


def test_merge_keys_are_not_duplicates() -> None:
    """`<<: *anchor` merges work, and overriding a merged key is intended, not a duplicate."""
    issues = IssueCollector()
    doc = parse_yaml("base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n", "f.yaml", issues)
    assert doc is not None and not issues
    assert doc.data["derived"] == {"x": 1, "y": 3}


def test_syntax_error_has_a_line() -> None:
    issues = IssueCollector()
    assert parse_yaml("a: [1, 2\nb: 3\n", "f.yaml", issues) is None
    assert issues.issues[0].line == 2 and "YAML syntax error" in issues.issues[0].message


def test_empty_document() -> None:
    issues = IssueCollector()
    doc = parse_yaml("", "f.yaml", issues)
    assert doc is not None and doc.data is None
