"""The line-aware YAML reader."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import yaml

from infersweep.config import yamlio
from infersweep.config.errors import IssueCollector
from infersweep.config.yamlio import is_yaml_name, key_path_at, parse_yaml, value_bound


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


# -- hostile input (issue 16); the corpus of whole files is tests/config/test_hostile_loader.py --------------


@pytest.mark.timeout(60)  # the quadratic version took minutes on these lines; no duration is asserted
def test_key_path_search_is_linear_on_long_lines() -> None:
    """A line of 2 MB of blanks without ':' (the regex used to split each run of blanks both ways), and one of
    half a million `- ` items (each used to copy the rest of the line)."""
    assert key_path_at("a:\n  b: 1\nc" + " " * 2_000_000 + "d\n", 3) == "a.b"  # a line without a key adds none
    assert key_path_at("a:\n  " + "- " * 500_000 + "x: 1\n", 2).startswith("a[0][0][0]")
    assert key_path_at("k" * 1_000 + "  : 1\n", 1) == "k" * 80 + "…(1,000 characters)"


def test_key_path_of_quoted_and_spaced_keys() -> None:
    text = "'a b' :\n  \"c\":\n    - d  : 1\n      e:\n"
    assert [key_path_at(text, n) for n in (1, 2, 3, 4)] == ["a b", "a b.c", "a b.c[0].d", "a b.c[0].e"]


def test_a_byte_order_mark_is_read_past() -> None:
    issues = IssueCollector()
    doc = parse_yaml("\ufeffsweep: x\nb: 1\n", "f.yaml", issues)
    assert doc is not None and doc.data == {"sweep": "x", "b": 1} and doc.line_of(("b",)) == 2
    assert _issues("\ufeffsweep: x\n  b: 1\n") == [
        "f.yaml:2: sweep.b: YAML syntax error: mapping values are not allowed in this context "
        "(allowed: valid YAML; check indentation, quotes and ':' after keys)"]


def test_the_pure_python_fallback_parser_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml: a BOM parses, deep nesting is the depth limit (not a RecursionError from PyYAML's
    recursive composer), and a control character names its line."""
    monkeypatch.setattr(yamlio, "_Loader", yaml.SafeLoader)
    issues = IssueCollector()
    doc = parse_yaml("\ufeffsweep: x\n", "f.yaml", issues)
    assert doc is not None and doc.data == {"sweep": "x"}
    assert _issues("x: " + "[" * 5_000 + "]" * 5_000 + "\n") == [
        "f.yaml: nested more than 64 levels deep (allowed: at most 64 levels of mappings and lists)"]
    assert _issues("a: 1\nb: \x07\n") == [
        "f.yaml:2: b: YAML syntax error: control character U+0007 is not allowed "
        "(allowed: printable text; in a double-quoted string write it as an escape, e.g. \\t or \\x07)"]


def test_lone_surrogates_are_an_issue() -> None:
    assert _issues("a: 1\nb: x\ud800\n") == [
        "f.yaml:2: b: not valid Unicode text: surrogates not allowed at character 9 "
        "(allowed: UTF-8 text; re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8))"]


@pytest.mark.parametrize("text", [
    "x: !!bool maybe", "x: !!timestamp nope", "x: !!int ''", "x: !!float ''", "!!bool maybe: 1", "x: {<<: 1}",
    "x: {<<: [1]}", "x: !!binary 1", "x: !foo {a: 1}", "x: 1" + ":1" * 200 + ".5", "x: " + "1" * 5_000,
    "!foo x: 1", "? [a]\n: 1",
])
def test_values_pyyaml_chokes_on_are_one_issue_each(text: str) -> None:
    """Each used to raise from PyYAML (KeyError, AttributeError, IndexError, ConstructorError, OverflowError)
    or take quadratic time; now it is one issue with its line, and no half-read document is returned."""
    issues = IssueCollector()
    assert parse_yaml(text + "\n", "f.yaml", issues) is None
    [issue] = issues.issues
    assert issue.line == 1 and issue.allowed, issue


def test_duplicate_keys_keep_the_document_but_an_unreadable_value_does_not() -> None:
    """A duplicate key is reported and the data still checked; an unreadable value would otherwise surface a
    second, misleading schema error ("expected an integer, got nothing")."""
    issues = IssueCollector()
    assert parse_yaml("a: 1\na: 2\n", "f.yaml", issues) is not None
    assert parse_yaml("a: !!int nope\n", "f.yaml", IssueCollector()) is None


def test_the_value_bound_is_an_upper_bound() -> None:
    docs = ["", "a", "- - - a", "-", "a: b", "[a, b: c, {d, e}]", "{a, b, ? c}", "? a\n: b\n", "a:\n- \n-\n",
            "[[[[]]]]", "{a: [1, {b: [2, 3]}]}", "x: !!set {a, b}", "--- a\n", "a: &x [1, 2]\nb: *x\n",
            *(p.read_text() for p in Path(__file__).parents[2].glob("configs/*.yaml"))]
    for text in docs:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        count, stack = 0, [node] if node is not None else []
        seen: set[int] = set()
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            count += 1
            if isinstance(n, yaml.SequenceNode):
                stack.extend(n.value)
            elif isinstance(n, yaml.MappingNode):
                stack.extend(x for pair in n.value for x in pair)
        assert count <= value_bound(text), text


def test_merge_keys_within_the_budget_still_merge() -> None:
    issues = IssueCollector()
    text = "a: &a {" + ", ".join(f"k{i}: {i}" for i in range(100)) + "}\nb: {<<: [" + ", ".join(["*a"] * 50) + "], k0: x}\n"
    doc = parse_yaml(text, "f.yaml", issues)
    assert issues.issues == [] and doc is not None and len(doc.data["b"]) == 100 and doc.data["b"]["k0"] == "x"


def test_the_garbage_collector_is_back_on_after_a_parse() -> None:
    assert gc.isenabled()
    parse_yaml("a: [1, 2\n", "f.yaml", IssueCollector())
    parse_yaml("a: 1\n", "f.yaml", IssueCollector())
    assert gc.isenabled()


def test_yaml_names_in_any_case() -> None:
    assert all(map(is_yaml_name, ["a.yaml", "B.YAML", "c.Yml", "d.yml"]))
    assert not any(map(is_yaml_name, ["a.yaml.bak", "b.json", "yaml", "c.yaml~"]))
