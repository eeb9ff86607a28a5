"""Hostile input for the YAML loader (`infersweep.config.yamlio`) and folder discovery (`sweep.discover`).

Every input is pinned to its full message list, in the format of tests/config/test_bad_configs.py. Inputs
that can be committed live in tests/fixtures/hostile_inputs/loader/ (files with bad bytes, bombs, odd tags;
folders for discovery) and are listed in EXPECTED; inputs that are huge or cannot be committed (symlinks,
FIFOs, sparse 40 MiB files, limits set through the environment) are generated into tmp_path by the GENERATED
cases. Each loads in-process through `load_sweep`; a representative handful also runs `infersweep plan`,
which must exit non-zero with the message and no traceback.

No test asserts a duration (machines are noisy). The timeout markers only turn a hang, or a regression to the
quadratic key-path search that took 69 s on one 160 KB line, into a failure instead of a stuck run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infersweep.config.errors import ConfigError, IssueCollector
from infersweep.config.sweep import discover, load_sweep
from infersweep.config.yamlio import read_yaml, track_reads

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hostile_inputs" / "loader"
CLI = Path(sys.executable).with_name("infersweep")

UTF8_FIX = " (allowed: UTF-8 text; re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8))"
SYNTAX_FIX = " (allowed: valid YAML; check indentation, quotes and ':' after keys)"
ENGINE_FIX = " (allowed: sim, vllm-docker, vllm-process or slurm)"
CONTROL_FIX = " (allowed: printable text; in a double-quoted string write it as an escape, e.g. \\t or \\x07)"
TAG_FIX = " (allowed: plain YAML (text, numbers, true/false, lists, mappings); drop the value's !tag)"
CRON_FIX = " (allowed: 5 cron fields like '0 2 * * *', a preset like @daily, or null for manual runs)"
DEPTH = "nested more than 64 levels deep (allowed: at most 64 levels of mappings and lists)"
ALIASES = "YAML aliases expand to more than 100,000 values (allowed: fewer or smaller *aliases (an alias bomb is refused))"
LOOP = "symlink loop: following its symlinks never reaches a file (allowed: point the symlink at a real file, or remove it)"
DANGLING = "file not found: a dangling symlink to 'missing.yaml' (allowed: point the symlink at an existing file, or remove it)"
FIFO = "not a regular file: it is a named pipe (FIFO) (allowed: a regular YAML file)"
SIZE_FIX = " (allowed: a smaller file (split it), or raise the limit with INFERSWEEP_MAX_CONFIG_BYTES=<bytes>)"
VALUES_FIX = " (allowed: a smaller file (split it), or raise the limit with INFERSWEEP_MAX_CONFIG_VALUES=<count>)"
TOO_BIG = "file is 41,943,040 bytes (40 MiB), more than the limit of 33,554,432 bytes (32 MiB)" + SIZE_FIX
DUPLICATE = "duplicate key 'engine' (first defined on line 2) (allowed: each key once per mapping; merge or rename the duplicate)"

EXPECTED: dict[str, list[str]] = {
    # Bytes that are not UTF-8 text: the first bad byte by offset, its line, and the key it sits under.
    "latin1_value.yaml": [
        "latin1_value.yaml:3: description: not UTF-8 text: byte 0xe9 at byte offset 42 is not part of a valid "
        "UTF-8 character" + UTF8_FIX,
    ],
    "binary_png_header.yaml": [
        "binary_png_header.yaml:1: not UTF-8 text: byte 0x89 at byte offset 0 is not part of a valid UTF-8 character"
        + UTF8_FIX,
    ],
    "utf16_le_bom.yaml": [
        "utf16_le_bom.yaml:1: file is UTF-16 text, not UTF-8 (it starts with a UTF-16 byte-order mark)" + UTF8_FIX,
    ],
    # A UTF-8 byte-order mark is read past: lines and key paths are those of the text after it.
    "utf8_bom_bad_engine.yaml": ["utf8_bom_bad_engine.yaml:2: engine: 'gpu' is not allowed" + ENGINE_FIX],
    "utf8_bom_syntax_error.yaml": [
        "utf8_bom_syntax_error.yaml:4: bench.prompts-per-conc.warmups-per-conc: YAML syntax error: mapping values "
        "are not allowed in this context" + SYNTAX_FIX,
    ],
    "control_char_bell.yaml": [
        "control_char_bell.yaml:2: engine: YAML syntax error: control character U+0007 is not allowed" + CONTROL_FIX,
    ],
    "nul_bytes.yaml": ["nul_bytes.yaml:3: engine: YAML syntax error: control character U+0000 is not allowed" + CONTROL_FIX],
    # Line ends other than \n, and JSON on one line, still name the right line.
    "crlf_line_endings.yaml": ["crlf_line_endings.yaml:3: schedule: 'every day' is not a cron schedule" + CRON_FIX],
    "cr_only_line_endings.yaml": ["cr_only_line_endings.yaml:3: schedule: 'every day' is not a cron schedule" + CRON_FIX],
    "json_one_line.yaml": ["json_one_line.yaml:1: schedule: 'every day' is not a cron schedule" + CRON_FIX],
    # Expansion bombs: a billion laughs, and the same through merge keys (`<<: [*a, *a, ...]`).
    "alias_bomb.yaml": ["alias_bomb.yaml:2: x-f[0][3][3][7][3][7]: " + ALIASES],
    "merge_bomb.yaml": ["merge_bomb.yaml:3: x-merged: " + ALIASES],
    "merge_recursive.yaml": [
        "merge_recursive.yaml:2: bench: recursive YAML alias in a merge (<<) (allowed: an alias may not refer to a "
        "mapping that contains it)",
    ],
    "merge_scalar.yaml": [
        "merge_scalar.yaml:3: bench: cannot merge: expected a mapping or list of mappings for merging, but found "
        "scalar (allowed: <<: *anchor or <<: [*a, *b], each naming a mapping)",
    ],
    "recursive_alias.yaml": [
        "recursive_alias.yaml:3: description[0]: recursive YAML alias (allowed: an alias may not refer to a mapping "
        "or list that contains it)",
    ],
    "deep_block_nesting.yaml": [
        "deep_block_nesting.yaml:67: bench." + ".".join(f"l{i}" for i in range(63)) + ": " + DEPTH,
    ],
    # Values PyYAML's constructors raise on (KeyError, AttributeError, IndexError, OverflowError before).
    "bool_tag_maybe.yaml": [
        "bool_tag_maybe.yaml:3: eval.enabled: cannot read value 'maybe': not a valid !!bool (allowed: a valid !!bool "
        "value, or quoted text without a !tag)",
    ],
    "timestamp_tag_garbage.yaml": [
        "timestamp_tag_garbage.yaml:2: engine: cannot read value 'nope': not a valid !!timestamp (allowed: a real "
        "date (YYYY-MM-DD), or quote the value)",
    ],
    "int_tag_empty.yaml": [
        "int_tag_empty.yaml:3: bench.prompts-per-conc: cannot read value '': not a valid !!int (allowed: a valid "
        "!!int value, or quoted text without a !tag)",
    ],
    "sexagesimal_overflow.yaml": [
        "sexagesimal_overflow.yaml:3: bench.random-range-ratio: cannot read value '" + "1:" * 40 + "…(403 "
        "characters)': int too large to convert to float (allowed: a valid !!float value, or quoted text without a "
        "!tag)",
    ],
    "long_number.yaml": [
        "long_number.yaml:3: bench.prompts-per-conc: value is a number of 5,000 characters, more than 4,300 "
        "(allowed: a shorter number, or quote the value to keep it as text)",
    ],
    # Tags: `!!python/...` on a list is not run, and not silently read as a plain list either.
    "python_tag.yaml": [
        "python_tag.yaml:2: engine: cannot read value: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'" + TAG_FIX,
    ],
    "unknown_scalar_tag.yaml": [
        "unknown_scalar_tag.yaml:2: engine: cannot read value: could not determine a constructor for the tag "
        "'!vault'" + TAG_FIX,
    ],
    # Long names are cut in messages (a 1 MB key must not make a 1 MB message).
    "undefined_alias_long_name.yaml": [
        "undefined_alias_long_name.yaml:2: engine: YAML syntax error: found undefined alias" + SYNTAX_FIX,
    ],
    "simple_key_too_long.yaml": [
        "simple_key_too_long.yaml:2: " + "k" * 80 + "…(2,000 characters): YAML syntax error: could not find "
        "expected ':' (while scanning a simple key started on line 2)" + SYNTAX_FIX,
    ],
    # 149 duplicate keys: the first 100 are listed, the rest counted in one line.
    "duplicate_key_flood.yaml": [
        *(f"duplicate_key_flood.yaml:{line}: engine: {DUPLICATE}" for line in range(3, 103)),
        "duplicate_key_flood.yaml:103: engine: 49 more YAML problems from here on are not listed (the first 100 "
        "are) (allowed: fix the problems listed and load again)",
    ],
    # Folders: every file has one defect, so each message proves its file was discovered; files that must not
    # be (notes.txt, quirks.yaml, a nested `sweep:`, .hidden.yaml, the folder sub.yaml/) would add one.
    "folder_upper_suffix": [
        "folder_upper_suffix/Nightly.YAML:2: engine: 'gpu-nightly' is not allowed" + ENGINE_FIX,
        "folder_upper_suffix/weekly.YML:2: engine: 'gpu-weekly' is not allowed" + ENGINE_FIX,
    ],
    "folder_quoted_keys": [
        "folder_quoted_keys/double.yaml:2: engine: 'gpu-dq' is not allowed" + ENGINE_FIX,
        "folder_quoted_keys/single.yaml:2: engine: 'gpu-sq' is not allowed" + ENGINE_FIX,
    ],
    "folder_bom_and_cr": [
        "folder_bom_and_cr/bom.yaml:2: engine: 'gpu-bom' is not allowed" + ENGINE_FIX,
        "folder_bom_and_cr/cr.yaml:2: engine: 'gpu-cr' is not allowed" + ENGINE_FIX,
    ],
    # A file that is not UTF-8 cannot be told apart from a sweep file, so it is reported, not skipped.
    "folder_non_utf8": [
        "folder_non_utf8/latin1_notes.yaml:1: notes: not UTF-8 text: byte 0xe9 at byte offset 10 is not part of a "
        "valid UTF-8 character" + UTF8_FIX,
        "folder_non_utf8/utf16_sweep.yaml:1: file is UTF-16 text, not UTF-8 (it starts with a UTF-16 byte-order "
        "mark)" + UTF8_FIX,
    ],
    "folder_skips": ["folder_skips/real.yaml:2: engine: 'gpu-real' is not allowed" + ENGINE_FIX],
}


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)


def _sparse(path: Path, size: int) -> None:
    """A file of `size` bytes that takes no disk space: only its stat is ever looked at."""
    _write(path, "sweep: big\n")
    with path.open("r+b") as fh:
        fh.truncate(size)


def _long_line(d: Path) -> str:
    # The input that took 69 s: a long run of blanks without ':' made the key-path regex backtrack.
    _write(d / "long_line.yaml", "sweep: long\nengine: sim\na" + " " * 160_000 + "b\nschedule: '@daily'\n")
    return "long_line.yaml"


def _flow_map_5mb(d: Path) -> str:
    _write(d / "flow_map.yaml", "sweep: wide\nx-map: {" + ", ".join(f"k{i}: {i}" for i in range(380_000)) + "}\n")
    return "flow_map.yaml"


def _scalar_1mb(d: Path) -> str:
    _write(d / "scalar.yaml", "sweep: scalar\nengine: gpu\ndescription: " + "a" * 1_000_000 + "\n")
    return "scalar.yaml"


def _flow_list_100k(d: Path) -> str:
    items = ", ".join(str(i) for i in range(100_000))
    _write(d / "list.yaml", f"sweep: list\nengine: sim\nbench: {{prompts-per-conc: [{items}]}}\n")
    return "list.yaml"


def _nested_10000(d: Path) -> str:
    _write(d / "deep.yaml", "sweep: deep\nengine: sim\nbench: " + "[" * 10_000 + "]" * 10_000 + "\n")
    return "deep.yaml"


def _unclosed_10000(d: Path) -> str:
    _write(d / "unclosed.yaml", "sweep: deep\nengine: sim\nbench: " + "[" * 10_000 + "\n")
    return "unclosed.yaml"


def _dense_list_4mb(d: Path) -> str:
    _write(d / "dense.yaml", "sweep: dense\nx-list: [" + "1," * 2_000_000 + "1]\n")
    return "dense.yaml"


def _oversized(d: Path) -> str:
    _sparse(d / "big.yaml", 40 * 2**20)
    return "big.yaml"


def _master_oversized(d: Path) -> str:
    _sparse(d / "master.yaml", 40 * 2**20)
    _write(d / "s.yaml", "sweep: s\nmasters: [master.yaml]\n")
    return "s.yaml"


def _size_env(d: Path) -> str:
    _write(d / "small.yaml", "sweep: small\nengine: sim\ndescription: " + "x" * 1_960 + "\n")
    return "small.yaml"


def _any_sweep(d: Path) -> str:
    _write(d / "any.yaml", "sweep: any\nengine: sim\n")
    return "any.yaml"


def _values_env(d: Path) -> str:
    _write(d / "values.yaml", "sweep: values\nengine: sim\nbench: {prompts-per-conc: 1, warmups-per-conc: 1}\n")
    return "values.yaml"


def _fifo(d: Path) -> str:
    os.mkfifo(d / "pipe.yaml")  # reading it would wait forever for a writer
    return "pipe.yaml"


def _fifo_in_folder(d: Path) -> str:
    _write(d / "fifo_folder" / "good.yaml", "sweep: good\nengine: sim\n")
    os.mkfifo(d / "fifo_folder" / "pipe.yaml")
    return "fifo_folder"


def _dangling(d: Path) -> str:
    (d / "link.yaml").symlink_to("missing.yaml")
    return "link.yaml"


def _dangling_in_folder(d: Path) -> str:
    _write(d / "links" / "good.yaml", "sweep: good\nengine: sim\n")
    (d / "links" / "dangling.yaml").symlink_to("missing.yaml")
    return "links"


def _loop(d: Path) -> str:
    (d / "self.yaml").symlink_to("self.yaml")
    return "self.yaml"


def _loop_pair_in_folder(d: Path) -> str:
    _write(d / "loop" / "good.yaml", "sweep: good\nengine: sim\n")
    (d / "loop" / "a.yaml").symlink_to("b.yaml")
    (d / "loop" / "b.yaml").symlink_to("a.yaml")
    return "loop"


def _folder_loop(d: Path) -> str:
    (d / "d1").symlink_to("d2")
    (d / "d2").symlink_to("d1")
    return "d1"


def _link_to_own_folder(d: Path) -> str:
    _write(d / "cfg" / "real.yaml", "sweep: real\nengine: gpu-real\n")
    (d / "cfg" / "self.yaml").symlink_to(".")  # a folder named *.yaml: not entered, so no endless recursion
    return "cfg"


def _master_is_a_folder(d: Path) -> str:
    (d / "masters.yaml").mkdir()
    _write(d / "s.yaml", "sweep: s\nmasters: [masters.yaml]\n")
    return "s.yaml"


def _unreadable(d: Path) -> str:
    _write(d / "secret.yaml", "sweep: secret\nengine: sim\n")
    (d / "secret.yaml").chmod(0)
    return "secret.yaml"


@dataclass(frozen=True)
class Generated:
    """An input written into tmp_path (the returned path is loaded from there), with its pinned messages."""

    make: Callable[[Path], str]
    expected: list[str]
    env: dict[str, str] = field(default_factory=dict)


GENERATED: dict[str, Generated] = {
    "long_line_then_syntax_error": Generated(_long_line, [
        "long_line.yaml:4: engine: YAML syntax error: could not find expected ':' (while scanning a simple key "
        "started on line 3)" + SYNTAX_FIX]),
    "flow_mapping_5mb_one_line": Generated(_flow_map_5mb, [
        "flow_map.yaml: too many YAML values: its ':', ',', '- ', '[' and '{' allow up to 1,520,005, more than the "
        "limit of 1,000,000" + VALUES_FIX]),
    "dense_flow_list_4mb": Generated(_dense_list_4mb, [
        "dense.yaml: too many YAML values: its ':', ',', '- ', '[' and '{' allow up to 4,000,007, more than the "
        "limit of 1,000,000" + VALUES_FIX]),
    # Big but within the limits: these load, and the file's one real defect is all that is reported.
    "plain_scalar_1mb": Generated(_scalar_1mb, ["scalar.yaml:2: engine: 'gpu' is not allowed" + ENGINE_FIX]),
    "flow_list_100k_items": Generated(_flow_list_100k, [
        "list.yaml:3: bench.prompts-per-conc: expected an integer, got a list (allowed: a whole number without "
        "quotes, e.g. 8)"]),
    "flow_nesting_10000_deep": Generated(_nested_10000, ["deep.yaml:3: bench: " + DEPTH]),
    "unclosed_flow_nesting_10000_deep": Generated(_unclosed_10000, ["unclosed.yaml:3: bench: " + DEPTH]),
    "oversized_sparse_40mib": Generated(_oversized, ["big.yaml: " + TOO_BIG]),
    "master_over_the_size_limit": Generated(_master_oversized, ["s.yaml:2: masters[0]: master.yaml: " + TOO_BIG]),
    "size_limit_from_env": Generated(_size_env, [
        "small.yaml: file is 1,999 bytes, more than the limit of 1,024 bytes" + SIZE_FIX],
        env={"INFERSWEEP_MAX_CONFIG_BYTES": "1024"}),
    "size_limit_env_not_a_number": Generated(_any_sweep, [
        "any.yaml: INFERSWEEP_MAX_CONFIG_BYTES='32MiB' is not a positive whole number (allowed: a whole number such "
        "as 33554432, or unset it for the default (33,554,432))"], env={"INFERSWEEP_MAX_CONFIG_BYTES": "32MiB"}),
    "value_limit_from_env": Generated(_values_env, [
        "values.yaml: too many YAML values: its ':', ',', '- ', '[' and '{' allow up to 15, more than the limit of "
        "10" + VALUES_FIX], env={"INFERSWEEP_MAX_CONFIG_VALUES": "10"}),
    "fifo_named_directly": Generated(_fifo, ["pipe.yaml: " + FIFO]),
    "fifo_in_folder": Generated(_fifo_in_folder, ["fifo_folder/pipe.yaml: " + FIFO]),
    "dangling_symlink_named_directly": Generated(_dangling, ["link.yaml: " + DANGLING]),
    "dangling_symlink_in_folder": Generated(_dangling_in_folder, ["links/dangling.yaml: " + DANGLING]),
    "symlink_loop_named_directly": Generated(_loop, ["self.yaml: " + LOOP]),
    "symlink_loop_pair_in_folder": Generated(_loop_pair_in_folder, ["loop/a.yaml: " + LOOP, "loop/b.yaml: " + LOOP]),
    "folder_symlink_loop": Generated(_folder_loop, ["d1: " + LOOP]),
    "symlink_to_own_folder_named_yaml": Generated(_link_to_own_folder, [
        "cfg/real.yaml:2: engine: 'gpu-real' is not allowed" + ENGINE_FIX]),
    "master_is_a_folder": Generated(_master_is_a_folder, [
        "s.yaml:2: masters[0]: masters.yaml: not a regular file: it is a folder (allowed: a regular YAML file)"]),
    "unreadable_file": Generated(_unreadable, [
        "secret.yaml: permission denied (allowed: a file (in folders) readable by the user infersweep runs as)"]),
}

#: Cases also run through `infersweep plan` in a subprocess (slow: one interpreter each).
CLI_CASES = ["latin1_value.yaml", "alias_bomb.yaml", "utf16_le_bom.yaml", "folder_upper_suffix",
             "long_line_then_syntax_error", "flow_nesting_10000_deep", "oversized_sparse_40mib", "fifo_named_directly"]


def _generated_params() -> list[object]:
    root = os.name == "posix" and os.geteuid() == 0
    return [pytest.param(name, marks=pytest.mark.skipif(root, reason="root reads a file of mode 000"))
            if name == "unreadable_file" else name for name in sorted(GENERATED)]


def corpus_entries() -> list[str]:
    return sorted(p.name for p in CORPUS.iterdir())


def _check(got: list[ConfigError], expected: list[str]) -> None:
    issues = got[0].issues
    assert [str(i) for i in issues] == expected
    for issue in issues:
        assert issue.allowed, f"no fix given: {issue}"
        assert "\n" not in str(issue) and len(str(issue)) < 600, issue


def _load(path: str) -> list[ConfigError]:
    try:
        load_sweep([Path(path)])
    except ConfigError as exc:
        return [exc]
    raise AssertionError(f"{path} loaded")


def test_corpus_is_complete() -> None:
    """Every committed input has pinned messages; with the generated ones, well over 25 cases."""
    assert set(corpus_entries()) == set(EXPECTED)
    assert len(EXPECTED) + len(GENERATED) >= 25


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_input(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(CORPUS)
    _check(_load(name), EXPECTED[name])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", _generated_params())
def test_generated_input(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = GENERATED[name]
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    _check(_load(case.make(tmp_path)), case.expected)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", CLI_CASES)
def test_plan_refuses_without_traceback(name: str, tmp_path: Path) -> None:
    """`infersweep plan PATH` exits non-zero with the first pinned message and no traceback."""
    env = dict(os.environ)
    if name in GENERATED:
        case = GENERATED[name]
        env.update(case.env)
        cwd, target, expected = tmp_path, case.make(tmp_path), case.expected
    else:
        cwd, target, expected = CORPUS, name, EXPECTED[name]
    proc = subprocess.run([str(CLI), "plan", target], cwd=cwd, env=env, capture_output=True, text=True, timeout=100)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    assert expected[0] in output, output


def test_discovery_keeps_what_it_cannot_classify(tmp_path: Path) -> None:
    """Sweep files (any suffix case, quoted key, BOM), plus every file whose kind cannot be told, so that loading
    it reports why; not data files, hidden files or sub-folders named *.yaml."""
    _write(tmp_path / "A.YAML", "sweep: a\n")
    _write(tmp_path / "b.yml", b"\xef\xbb\xbf'sweep': b\n")
    _write(tmp_path / "c.yaml", '"sweep"  :  c\n')
    _write(tmp_path / "data.yaml", "m1: {gmu: 0.9}\nnotes: 'sweep: not at the top'\n")
    _write(tmp_path / "indented.yaml", "x:\n  sweep: y\n")
    _write(tmp_path / "colon.yaml", "sweep:x\n")  # a plain scalar, not a key
    _write(tmp_path / ".hidden.yaml", "sweep: h\n")
    _write(tmp_path / "sub.yaml" / "inner.yaml", "sweep: inner\n")
    _write(tmp_path / "latin1.yaml", b"k: caf\xe9\n")
    (tmp_path / "dangling.yaml").symlink_to("missing.yaml")
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")
    (tmp_path / ".#lock.yaml").symlink_to("user@host.1234:1700000000")  # emacs' lock file: hidden, skipped
    os.mkfifo(tmp_path / "pipe.yaml")
    found = [p.name for p in discover([tmp_path])]
    assert found == ["A.YAML", "b.yml", "c.yaml", "dangling.yaml", "latin1.yaml", "loop.yaml", "pipe.yaml"]


def test_loop_and_dangling_links_read_directly_are_clear_errors(tmp_path: Path) -> None:
    """What `add_path` will report once it stops resolving the path first: read_yaml itself never raises, and
    the parse cache's read tracking survives a loop too."""
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")
    (tmp_path / "dangling.yaml").symlink_to("missing.yaml")
    issues = IssueCollector()
    with track_reads() as reads:
        assert read_yaml(tmp_path / "loop.yaml", issues, display="loop.yaml") is None
        assert read_yaml(tmp_path / "dangling.yaml", issues, display="dangling.yaml") is None
    assert [str(i) for i in issues.issues] == ["loop.yaml: " + LOOP, "dangling.yaml: " + DANGLING]
    assert [p.name for p in reads] == ["loop.yaml", "missing.yaml"]


def test_the_parse_cache_key_sees_every_discovered_file(tmp_path: Path) -> None:
    """The parse cache's folder key and discovery use the same suffix rule (any case of .yaml / .yml)."""
    from infersweep.airflow.parse_cache import _folder_key

    for name in ("Nightly.YAML", "x.YML", "y.Yaml", "z.yml"):
        _write(tmp_path / name, f"sweep: {name.split('.')[0].lower()}\n")
    _write(tmp_path / "notes.txt", "sweep: no\n")
    [[_, entries]] = _folder_key([tmp_path])
    assert {p.name for p in discover([tmp_path])} <= {e[0] for e in entries} == {"Nightly.YAML", "x.YML", "y.Yaml", "z.yml"}
