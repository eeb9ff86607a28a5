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


def _issues(text: str) -> list[str]:
    issues = IssueCollector()
    parse_yaml(text, "f.yaml", issues)
    return [str(i) for i in issues.issues]


def test_an_alias_bomb_is_refused_with_the_limit_named() -> None:
    """A 300-byte billion-laughs file used to run for half a minute and gigabytes before a MemoryError."""
    text = "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join(["*" + chr(97 + i)] * 9) + "]\n" for i in range(8))
    [message] = _issues(text)
    assert "YAML aliases expand to more than 100,000 values" in message and message.startswith("f.yaml:")


def test_small_aliases_still_work() -> None:
    issues = IssueCollector()
    doc = parse_yaml("base: &b {tp: 8, conc-list: [1, 2]}\npoints: [*b, *b]\n", "f.yaml", issues)
    assert issues.issues == [] and doc is not None and doc.data["points"] == [{"tp": 8, "conc-list": [1, 2]}] * 2


def test_deep_nesting_is_refused_not_a_recursion_error() -> None:
    [message] = _issues("x: " + "{a: " * 600 + "1" + "}" * 600 + "\n")
    assert "nested more than 64 levels deep" in message


def test_impossible_dates_name_the_key_and_the_fix() -> None:
    """`2026-13-45` as a key or a value raised an uncaught ValueError from PyYAML's date resolver."""
    assert _issues("image-history: {2026-13-45: x}\nwhen: 2026-02-30\n") == [
        "f.yaml:1: image-history: cannot read key '2026-13-45': month must be in 1..12 "
        "(allowed: a real date (YYYY-MM-DD), or quote the key)",
        "f.yaml:2: when: cannot read value '2026-02-30': day is out of range for month "
        "(allowed: a real date (YYYY-MM-DD), or quote the value)",
    ]
