"""`infersweep recipe validate-cli`: planned recipes → the probe protocol → per-image summary.

A fake vLLM (a `vllm` package with a serve parser made of the flags a test chooses) stands in for the real
one, run through a stand-in interpreter exactly as `.venv-vllm/bin/python` is run, so the subprocess, the
JSON protocol and the reporting are tested without vLLM. tests/real_engine/test_recipe_cli_check.py asks the
real vLLM.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.config.sweep import load_sweep
from infersweep.recipes import cli_check
from infersweep.recipes.cli_check import (
    Collected,
    ProbeError,
    ProbeResponse,
    check_sources,
    collect_recipes,
    format_report,
    run_probe,
)

SWEEP = """\
sweep: cli-check
engine: vllm-process
schedule: null
entries:
  tiny-bf16-cpu-vllm:
    image: vllm/vllm-openai:v0.1.0
    model: org/tiny
    model-prefix: tiny
    runner: cpu
    precision: bf16
    framework: vllm
    multinode: false
    scenarios:
      fixed-seq-len:
      - {isl: 128, osl: 64, search-space: [{tp: 1, conc-list: [1, 2]}]}
  quirky-bf16-cpu-vllm:
    image: vllm/vllm-openai:v0.2.0
    model: org/quirky
    model-prefix: quirky
    runner: cpu
    precision: bf16
    framework: vllm
    multinode: false
    scenarios:
      fixed-seq-len:
      - {isl: 128, osl: 64, search-space: [{tp: 1, conc-list: [1]}, {tp: 2, conc-list: [4]}]}
  quirky-bf16-cpu-vllm-mtp:
    image: vllm/vllm-openai:v0.2.0
    model: org/quirky
    model-prefix: quirky
    runner: cpu
    precision: bf16
    framework: vllm
    multinode: false
    scenarios:
      fixed-seq-len:
      - {isl: 128, osl: 64, search-space: [{tp: 1, conc-list: [1], spec-decoding: mtp}]}
  tiny-bf16-cpu-sglang:
    image: lmsysorg/sglang:v0.1
    model: org/tiny
    model-prefix: tiny
    runner: cpu
    precision: bf16
    framework: sglang
    multinode: false
    scenarios:
      fixed-seq-len:
      - {isl: 128, osl: 64, search-space: [{tp: 1, conc-list: [1]}]}
inventory:
  cpu:
  - {name: cpu-0, gpus: 8, gpu-memory-gb: 80}
quirks:
  quirky:
    extra-serve-flags: [--language-model-only]
"""

_SERVE = '''\
import argparse, json, pathlib

FLAGS = json.loads((pathlib.Path(__file__).parents[3] / "flags.json").read_text())


class ServeSubcommand:
    name = "serve"

    def subparser_init(self, subparsers):
        p = subparsers.add_parser("serve")
        p.add_argument("model_tag", nargs="?")
        for flag in FLAGS["switches"]:
            p.add_argument(flag, action="store_true")
        for flag in FLAGS["valued"]:
            p.add_argument(flag, type=int if flag == "--port" else str)
        p.add_argument("--speculative-config", type=json.loads)
        return p

    def validate(self, args):
        if args.model_tag == "reject/me":
            raise TypeError("validation refused the model")
'''

_SPECULATIVE = '''\
import dataclasses
from typing import Literal


@dataclasses.dataclass
class SpeculativeConfig:
    method: Literal["eagle3", "mtp"] | None = None
    model: str | None = None
    num_speculative_tokens: int | None = None
'''


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _flags_of(argvs: list[tuple[str, ...]]) -> tuple[set[str], set[str]]:
    """(switches, valued flags) used by these argvs."""
    switches, valued = set(), set()
    for argv in argvs:
        for i, tok in enumerate(argv):
            if tok.startswith("--"):
                has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
                (valued if has_value else switches).add(tok)
    return switches, valued


@pytest.fixture()
def fake_vllm(tmp_path: Path):
    """make(switches, valued) -> a stand-in `vllm` interpreter whose serve parser knows exactly those flags."""

    def make(switches: set[str], valued: set[str]) -> Path:
        root = tmp_path / "fake-vllm"
        files = {
            "vllm/__init__.py": '__version__ = "0.0.0+fake"\n',
            "vllm/utils/__init__.py": "",
            "vllm/utils/argparse_utils.py": "from argparse import ArgumentParser as FlexibleArgumentParser\n",
            "vllm/entrypoints/__init__.py": "",
            "vllm/entrypoints/cli/__init__.py": "",
            "vllm/entrypoints/cli/serve.py": _SERVE,
            "vllm/config/__init__.py": "",
            "vllm/config/speculative.py": _SPECULATIVE,
        }
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        (root / "flags.json").write_text(json.dumps({"switches": sorted(switches), "valued": sorted(valued)}))
        # Called as `python -I probe.py REQUEST RESPONSE`; fails unless isolated mode was asked for, then runs
        # the probe with the fake package first on sys.path.
        runner = "import runpy, sys; sys.path.insert(0, sys.argv[1]); sys.argv = sys.argv[2:]; " \
                 "runpy.run_path(sys.argv[0], run_name='__main__')"
        return _executable(tmp_path / "python", textwrap.dedent(f"""\
            #!/bin/sh
            [ "$1" = "-I" ] || {{ echo "probe not run with -I" >&2; exit 9; }}
            shift
            exec {sys.executable} -I -c "{runner}" {root} "$@"
            """))

    return make


@pytest.fixture()
def sweep_file(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    return path


@pytest.fixture()
def collected(sweep_file: Path) -> Collected:
    return collect_recipes(load_sweep([sweep_file]), name="configs", paths=[str(sweep_file)], blocking=True)


def test_collects_the_planned_vllm_recipes(collected: Collected) -> None:
    assert [(r.config_key, r.image) for r in collected.recipes] == [
        ("tiny-bf16-cpu-vllm", "vllm/vllm-openai:v0.1.0"),
        ("quirky-bf16-cpu-vllm", "vllm/vllm-openai:v0.2.0"),
        ("quirky-bf16-cpu-vllm", "vllm/vllm-openai:v0.2.0"),
    ]
    tiny = collected.recipes[0]
    assert tiny.argv[:3] == ("vllm", "serve", "org/tiny")
    assert tiny.argv[tiny.argv.index("--served-model-name") + 1] == "org/tiny"  # as the DAG builds it
    assert all("--language-model-only" in r.argv for r in collected.recipes[1:])
    assert [n.short_reason for n in collected.not_built] == ["no spec-decoding quirk 'mtp' for quirky"]
    assert "quirky-bf16-cpu-vllm-mtp" in collected.not_built[0].reason
    assert collected.other_frameworks == {"sglang": 1}


def test_fallback_quirks_fill_in_for_master_files(sweep_file: Path, tmp_path: Path) -> None:
    table = cli_check.load_quirks_file(_write(tmp_path / "q.yaml", """\
        quirky:
          spec-decoding:
            mtp: {method: eagle3, draft-model: org/drafter, num-speculative-tokens: 2}
        """))
    sweep = load_sweep([sweep_file])
    sweep.quirks.clear()  # as for a master file: no quirks of its own
    got = collect_recipes(sweep, name="fixtures", paths=["x"], blocking=False, fallback_quirks=table)
    assert got.not_built == ()
    spec = [r for r in got.recipes if "--speculative-config" in r.argv]
    assert len(spec) == 1 and "org/drafter" in spec[0].argv[spec[0].argv.index("--speculative-config") + 1]


def test_bad_quirks_file_names_the_file_and_model(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.yaml", "quirky: {gmu: 7}\n")
    with pytest.raises(ValueError, match=r"q\.yaml: quirks for 'quirky' are invalid"):
        cli_check.load_quirks_file(path)


def test_unknown_flags_are_reported_per_image(collected: Collected, fake_vllm) -> None:
    switches, valued = _flags_of([r.argv for r in collected.recipes])
    python = fake_vllm(switches - {"--language-model-only"}, valued)
    report = check_sources([collected], vllm_python=python, timeout_s=120)

    assert report.vllm_version == "0.0.0+fake"
    assert report.parser == "vllm.entrypoints.cli.serve.ServeSubcommand.subparser_init"
    (source,) = report.sources
    by_image = {i.image: i for i in source.images}
    assert by_image["vllm/vllm-openai:v0.1.0"].model_dump(include={"recipes", "ok", "unknown", "not_built"}) == {
        "recipes": 1, "ok": 1, "unknown": 0, "not_built": 0}
    quirky = by_image["vllm/vllm-openai:v0.2.0"]
    assert (quirky.recipes, quirky.ok, quirky.unknown, quirky.not_built) == (2, 0, 2, 1)
    assert quirky.unknown_flags == {"--language-model-only": 2}
    assert quirky.not_built_reasons == {"no spec-decoding quirk 'mtp' for quirky": 1}
    assert report.blocking_failures == 3

    text = format_report(report)
    assert "vLLM 0.0.0+fake" in text and "flags vLLM 0.0.0+fake lacks" in text
    assert "configs (must parse;" in text and "3 recipes checked, 1 ok, 1 not built" in text
    assert "unknown flags: --language-model-only ×2" in text
    assert "other frameworks (no vLLM recipe, not checked): sglang 1 groups" in text


def test_every_flag_known_passes(collected: Collected, fake_vllm) -> None:
    python = fake_vllm(*_flags_of([r.argv for r in collected.recipes]))
    fine = collected.model_copy(update={"not_built": ()})
    report = check_sources([fine], vllm_python=python, timeout_s=120)
    assert report.blocking_failures == 0
    assert {r.result.status for r in report.sources[0].recipes} == {"ok"}


def test_values_validation_and_speculative_config(fake_vllm) -> None:
    python = fake_vllm({"--trust-remote-code"}, {"--port"})
    head = ["vllm", "serve", "org/m"]
    answer = run_probe([
        [*head, "--port", "x"],
        ["vllm", "serve", "reject/me"],
        [*head, "--speculative-config", '{"method": "eagle3", "num_speculative_tokens": 2}'],
        [*head, "--speculative-config", '{"methd": "eagle3"}'],
        [*head, "--speculative-config", '{"method": "medusa-ish"}'],
        ["sglang", "serve"],
    ], vllm_python=python, timeout_s=120)
    got = [(r.status, r.message) for r in answer.results]
    assert got[0][0] == "invalid" and "--port" in got[0][1]
    assert got[1] == ("invalid", "TypeError: validation refused the model")
    assert got[2] == ("ok", None)
    assert got[3] == ("invalid", "--speculative-config: unknown keys ['methd'] (SpeculativeConfig has no such fields)")
    assert got[4][0] == "invalid" and "method 'medusa-ish' is not one of ['eagle3', 'mtp']" in got[4][1]
    assert got[5][0] == "not-serve"


def test_identical_argvs_are_parsed_once(collected: Collected, monkeypatch) -> None:
    seen: list[list[tuple[str, ...]]] = []

    def fake_probe(argvs, *, vllm_python, timeout_s):
        seen.append([tuple(a) for a in argvs])
        return ProbeResponse(vllm_version="9", python="3.11", parser="p", results=tuple(
            {"id": f"r{i}", "status": "ok"} for i in range(len(argvs))))

    monkeypatch.setattr(cli_check, "run_probe", fake_probe)
    twin = collected.model_copy(update={"name": "fixtures x", "blocking": False})
    report = check_sources([collected, twin], vllm_python=Path("py"), timeout_s=1)
    assert len(seen) == 1 and len(seen[0]) == len(set(seen[0])) == 3
    assert [sum(i.ok for i in s.images) for s in report.sources] == [3, 3]


def test_probe_failures_are_probe_errors(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="no vLLM interpreter at"):
        run_probe([["vllm", "serve", "m"]], vllm_python=tmp_path / "missing" / "python")
    crash = _executable(tmp_path / "crash", "#!/bin/sh\necho 'ImportError: no AVX-512' >&2\nexit 3\n")
    with pytest.raises(ProbeError, match=r"(?s)failed \(exit 3\).*no AVX-512"):
        run_probe([["vllm", "serve", "m"]], vllm_python=crash)
    garbage = _executable(tmp_path / "garbage", "#!/bin/sh\necho '{\"results\": 1}' > \"$4\"\n")
    with pytest.raises(ProbeError, match="outside its protocol"):
        run_probe([["vllm", "serve", "m"]], vllm_python=garbage)
    short = _executable(tmp_path / "short", "#!/bin/sh\necho '{\"vllm_version\": \"1\", \"python\": \"3\", "
                        "\"parser\": \"p\", \"results\": []}' > \"$4\"\n")
    with pytest.raises(ProbeError, match="0 results for 1 argvs"):
        run_probe([["vllm", "serve", "m"]], vllm_python=short)


def test_a_hanging_probe_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hang = _executable(tmp_path / "hang", f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 300\n")
    with pytest.raises(ProbeError, match="did not finish within 1 s"):
        run_probe([["vllm", "serve", "m"]], vllm_python=hang, timeout_s=1)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# --- the command ------------------------------------------------------------------------------------------


def _cli(*args: str):
    return CliRunner().invoke(app, ["recipe", "validate-cli", *args])


def test_command_exits_1_when_a_config_recipe_does_not_parse(collected, sweep_file, fake_vllm, tmp_path) -> None:
    switches, valued = _flags_of([r.argv for r in collected.recipes])
    python = fake_vllm(switches - {"--language-model-only"}, valued)
    out_json = tmp_path / "report.json"
    res = _cli(str(sweep_file), "--vllm-python", str(python), "--json", str(out_json))
    assert res.exit_code == 1, res.output
    assert "unknown flags: --language-model-only ×2" in res.stdout
    assert "3 recipe(s) of" in res.stderr and "do not parse with vLLM 0.0.0+fake" in res.stderr
    data = json.loads(out_json.read_text())
    assert data["vllm_version"] == "0.0.0+fake"
    assert len(data["sources"][0]["recipes"]) == 3


def test_fixture_failures_do_not_change_the_exit_code(collected, sweep_file, fake_vllm, tmp_path) -> None:
    python = fake_vllm(*_flags_of([r.argv for r in collected.recipes]))
    good = _write(tmp_path / "good.yaml", SWEEP.replace("quirky-bf16-cpu-vllm-mtp", "unused-x").replace(
        "spec-decoding: mtp", "spec-decoding: none"))
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    # A master file: the entries alone. Its model has no quirks there; --quirks supplies none either.
    master = {"odd-bf16-cpu-vllm": {
        "image": "vllm/vllm-openai:v9", "model": "org/odd", "model-prefix": "odd", "runner": "cpu",
        "precision": "bf16", "framework": "vllm", "multinode": False,
        "scenarios": {"fixed-seq-len": [{"isl": 128, "osl": 64, "search-space": [
            {"tp": 1, "conc-list": [1], "spec-decoding": "mtp"}, {"tp": 1, "conc-list": [2]}]}]}}}
    (fixtures / "tiny-master.yaml").write_text(json.dumps(master))
    (fixtures / "runners.yaml").write_text("cpu: [cpu-0]\n")
    quirks = _write(tmp_path / "quirks.yaml", "quirky: {}\n")
    res = _cli(str(good), "--vllm-python", str(python), "--fixtures", "--fixtures-dir", str(fixtures),
               "--quirks", str(quirks))
    assert res.exit_code == 0, res.output
    assert "fixtures tiny-master.yaml (informational;" in res.stdout
    assert "1 recipes checked, 1 ok, 1 not built" in res.stdout
    assert "not built: no spec-decoding quirk 'mtp' for odd ×1" in res.stdout


def test_command_usage_errors_exit_2(sweep_file, tmp_path) -> None:
    res = _cli(str(sweep_file), "--vllm-python", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "no vLLM interpreter at" in res.stderr
    res = _cli(str(sweep_file), "--fixtures", "--fixtures-dir", str(tmp_path))
    assert res.exit_code == 2 and "no *master*.yaml files in" in res.stderr
    res = _cli(str(sweep_file), "--quirks", str(sweep_file))
    assert res.exit_code == 2 and "--quirks only applies with --fixtures" in res.stderr
    res = _cli(str(tmp_path / "missing.yaml"), "--vllm-python", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "missing.yaml" in res.stderr


def test_recipe_without_a_subcommand_still_needs_its_options() -> None:
    res = CliRunner().invoke(app, ["recipe", "--isl", "1024"])
    assert res.exit_code == 2
    assert "missing option(s) --config-key, --osl, --tp" in res.stderr


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path
