"""Every SGLang recipe of the InferenceX fixture parses with the SGLang its image runs (issue 17: "each engine's
own parser accepts each recipe").

The SGLang argparse lane (`make test-sglang-cli`, scripts/sglang_lane/install.sh) installs one SGLang release in
its own venv; `sglang_argparse_probe.py` builds that release's own `ServerArgs` parser there and parses each argv,
starting nothing. Only the serve groups whose image tag names that release are checked (a nightly or another
release has other options). Option strings must be exact: argparse accepts a unique prefix, which a later release
can make ambiguous (SGLang 0.5.23 did so to `--cuda-graph-max-bs`), so prefixes are allowed only where listed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infersweep.config.quirks import resolve_quirks
from infersweep.config.sweep import load_sweep
from infersweep.plan.groups import group_jobs
from infersweep.plan.planner import expand_jobs
from infersweep.recipes.cli_check import load_quirks_file
from infersweep.recipes.registry import build_recipe
from tests.conftest import ROOT, SHARED

pytestmark = pytest.mark.real_engine

#: The lane's interpreter, set by `make test-sglang-cli`; else .venv-sglang when its install stamp is there.
SGLANG_PYTHON_ENV = "INFERSWEEP_SGLANG_PYTHON"
VENV = Path(os.environ.get("INFERSWEEP_SGLANG_VENV") or ROOT / ".venv-sglang")
PROBE = ROOT / "include" / "infersweep" / "recipes" / "sglang_argparse_probe.py"
FIXTURES = SHARED / "fixtures" / "inferencex"
MASTERS = ("nvidia-master.yaml", "amd-master.yaml")
PROBE_TIMEOUT_S = 600

#: Recipes of a tested release that are known not to parse with it: (config key, unknown flag) -> reason.
#: Empty for SGLang 0.5.12: the fixture's launches with a flag only a nightly has run nightly images, which this
#: lane does not test (their groups are counted as "other versions").
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

#: Option prefixes the recipes may use, with the exact option SGLang reads: InferenceX's own scripts launch
#: with these, and the release parses them as that option. Any other prefix fails the test.
ALLOWED_PREFIXES: dict[str, str] = {
    # SGLang 0.5.12 has no option string '--tp'; InferenceX's qwen3.5_fp8_h100/h200[_mtp].sh pass it, and
    # SGLang reads it as --tp-size (--tensor-parallel-size).
    "--tp": "--tp-size",
}

#: The release in the image tag: `v0.5.12-cu130`, `v0.5.12.post1-rocm720-…`, `sglang-0.5.9-rocm720…`.
_TAG_VERSION = re.compile(r"(?:^|[-_])v?(\d+\.\d+\.\d+(?:\.post\d+|rc\d+)?)(?=$|[-_])")


def image_version(image: str) -> str | None:
    """The SGLang release an image's tag names; None for nightlies, digests and special builds."""
    tag = image.split("@", 1)[0].rsplit("/", 1)[-1].partition(":")[2]
    m = _TAG_VERSION.search(tag)
    return m.group(1) if m else None


@dataclass(frozen=True)
class SglRecipe:
    master: str
    config_key: str
    group: str
    image: str
    version: str | None
    argv: tuple[str, ...]


def collect() -> list[SglRecipe]:
    """The recipe of every single-node SGLang serve group of the fixture's master files."""
    table = load_quirks_file(ROOT / "configs" / "quirks.yaml")
    out = []
    for name in MASTERS:
        sweep = load_sweep([FIXTURES / name])
        for group in group_jobs(expand_jobs(sweep)):
            if group.framework != "sglang" or group.disagg:
                continue
            quirks = sweep.quirks_for(group.model_prefix, group.model) or resolve_quirks(
                table, model_prefix=group.model_prefix, model=group.model)
            recipe = build_recipe(group, quirks, served_model_name=group.model)
            out.append(SglRecipe(name, group.config_key, group.name, group.image, image_version(group.image),
                                 tuple(recipe.argv)))
    return out


def lane_python() -> Path:
    if os.environ.get(SGLANG_PYTHON_ENV):
        return Path(os.environ[SGLANG_PYTHON_ENV])
    if not (VENV / ".installed").exists():
        pytest.skip(f"the SGLang argparse lane is not installed in {VENV} (no .installed stamp): "
                    "`make test-sglang-cli` installs it where the machine allows (local CPU torch wheel, package index)")
    return VENV / "bin" / "python"


def probe(python: Path, argvs: list[tuple[str, ...]]) -> dict[str, Any]:
    # -I: the probe's folder holds recipes/sglang.py, which must not shadow the sglang package.
    proc = subprocess.run([str(python.absolute()), "-I", str(PROBE)], input=json.dumps([list(a) for a in argvs]),
                          capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, cwd="/",
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, f"the SGLang probe failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    answer: dict[str, Any] = json.loads(proc.stdout)
    assert len(answer["results"]) == len(argvs)
    return answer


CONTROLS: dict[str, tuple[str, ...]] = {
    "ok": ("python3", "-m", "sglang.launch_server", "--model-path", "org/m", "--tensor-parallel-size", "2"),
    "ok-cli": ("sglang", "serve", "--model-path", "org/m", "--trust-remote-code"),
    "unknown-flag": ("python3", "-m", "sglang.launch_server", "--model-path", "org/m", "--no-such-sglang-flag", "1"),
    "bad-choice": ("python3", "-m", "sglang.launch_server", "--model-path", "org/m", "--attention-backend", "nope"),
    "bad-int": ("python3", "-m", "sglang.launch_server", "--model-path", "org/m", "--tp-size", "two"),
    "prefix": ("python3", "-m", "sglang.launch_server", "--model-path", "org/m", "--mem-fraction-stat", "0.8"),
    "not-sglang": ("vllm", "serve", "org/m"),
}


@pytest.fixture(scope="module")
def checked() -> dict[str, Any]:
    python = lane_python()
    if not FIXTURES.is_dir():
        pytest.skip(f"no InferenceX fixtures at {FIXTURES}")
    recipes = collect()
    argvs = list(dict.fromkeys([*CONTROLS.values(), *(r.argv for r in recipes)]))
    started = time.monotonic()
    answer = probe(python, argvs)
    wall = time.monotonic() - started
    by_argv = dict(zip(argvs, answer["results"], strict=True))
    version = answer["sglang_version"]
    mine = [r for r in recipes if r.version == version]
    failures = [(r, by_argv[r.argv]) for r in mine if by_argv[r.argv]["status"] != "ok"]
    others = Counter(r.version or "nightly/special build" for r in recipes if r.version != version)
    prefixes = Counter(f for r in mine for f in by_argv[r.argv]["abbreviated_flags"])
    lines = [
        f"sglang-cli: SGLang {version} (Python {answer['python']}, {answer['option_strings']} option strings, "
        f"stubs: {', '.join(answer['stubs']) or 'none'}); probe {wall:.1f} s wall "
        f"(import {answer['seconds']['import']:.1f} s, parse {answer['seconds']['parse']:.2f} s for {len(argvs)} argvs)",
        f"sglang-cli: {len(mine)} recipes checked (images of SGLang {version}, {len({r.argv for r in mine})} distinct "
        f"argvs), {len(mine) - len(failures)} parsed ok, {len(failures)} failures",
        "sglang-cli: not checked (other releases): " + (", ".join(f"{v} ×{n}" for v, n in sorted(others.items())) or "none"),
    ]
    rest = [(r, by_argv[r.argv]) for r in recipes if r.version != version]
    if rest:  # informational: other releases have other options, so these failures are not errors
        flags = Counter(f for _, res in rest for f in res["unknown_flags"])
        lines.append(f"sglang-cli: informational, other releases' recipes with SGLang {version}: "
                     f"{sum(res['status'] == 'ok' for _, res in rest)} of {len(rest)} parse"
                     + (f"; unknown flags: {', '.join(f'{f} ×{n}' for f, n in flags.most_common())}" if flags else ""))
    if prefixes:
        lines.append("sglang-cli: option prefixes used: " + ", ".join(f"{f} ×{n}" for f, n in prefixes.most_common()))
    for r, res in failures:
        lines.append(f"sglang-cli: FAIL {r.master} {r.group} [{r.image}]: {res['status']} "
                     f"{res['unknown_flags'] or ''} {res['message']}")
    print("\n" + "\n".join(lines))
    return {"answer": answer, "by_argv": by_argv, "mine": mine, "failures": failures, "version": version}


def test_image_version_reads_the_release_from_the_tag() -> None:
    assert image_version("lmsysorg/sglang:v0.5.12-cu130") == "0.5.12"
    assert image_version("lmsysorg/sglang:v0.5.12") == "0.5.12"
    assert image_version("lmsysorg/sglang:v0.5.12.post1") == "0.5.12.post1"
    assert image_version("lmsysorg/sglang-rocm:v0.5.12-rocm720-mi35x-20260517") == "0.5.12"
    assert image_version("lmsysorg/sglang-rocm:v0.5.10rc0-rocm720-mi35x-20260414") == "0.5.10rc0"
    assert image_version("rocm/sgl-dev:sglang-0.5.9-rocm720-mi35x-mori-0227-2") == "0.5.9"
    assert image_version("lmsysorg/sglang:nightly-dev-cu13-20260529-a8cfae0b") is None
    assert image_version("lmsysorg/sglang:deepseek-v4-blackwell@sha256:df18bf") is None


def test_the_probe_can_fail(checked: dict[str, Any]) -> None:
    got = {name: checked["by_argv"][argv] for name, argv in CONTROLS.items()}
    assert got["ok"]["status"] == "ok" and got["ok"]["abbreviated_flags"] == []
    assert got["ok-cli"]["status"] == "ok" and got["ok-cli"]["launcher"] == ["sglang", "serve"]
    assert got["unknown-flag"]["status"] == "unknown-flags"
    assert got["unknown-flag"]["unknown_flags"] == ["--no-such-sglang-flag"]
    assert got["bad-choice"]["status"] == "invalid" and "--attention-backend" in got["bad-choice"]["message"]
    assert got["bad-int"]["status"] == "invalid" and "invalid int value" in got["bad-int"]["message"]
    assert got["prefix"]["status"] == "ok" and got["prefix"]["abbreviated_flags"] == ["--mem-fraction-stat"]
    assert got["not-sglang"]["status"] == "not-sglang"


def test_the_fixture_has_recipes_for_the_lane_release(checked: dict[str, Any]) -> None:
    assert checked["mine"], (f"no single-node SGLang group of the fixture runs an SGLang {checked['version']} image: "
                             "install the release the images run (scripts/sglang_lane/install.sh)")


def test_every_recipe_parses_with_its_release(checked: dict[str, Any]) -> None:
    unexpected = []
    for r, res in checked["failures"]:
        flags = res["unknown_flags"] or [""]
        if not all((r.config_key, f) in KNOWN_FAILURES for f in flags):
            unexpected.append(f"{r.master} {r.group} [{r.image}]: {res['status']} {res['unknown_flags']} "
                              f"{res['message']}\n  argv: {' '.join(r.argv)}")
    assert not unexpected, (f"{len(unexpected)} recipes do not parse with SGLang {checked['version']}:\n"
                            + "\n".join(unexpected))


def test_recipes_use_exact_option_strings(checked: dict[str, Any]) -> None:
    bad = sorted({f"{f} ({r.config_key})" for r in checked["mine"]
                  for f in checked["by_argv"][r.argv]["abbreviated_flags"] if f not in ALLOWED_PREFIXES})
    assert not bad, (f"recipes give SGLang {checked['version']} options by a prefix (argparse expands it; a later "
                     f"release can make it ambiguous or another option): {bad}")


if __name__ == "__main__":  # pragma: no cover - manual figures
    sys.exit(pytest.main([__file__, "-q", "-s", "-m", "real_engine"]))
