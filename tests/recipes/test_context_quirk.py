"""The `max-model-len` quirk and the real-engine CPU sweep file (configs/smollm2-cpu.yaml) as recipes."""

from __future__ import annotations

from pathlib import Path

import pytest

from infersweep.config.errors import ConfigError
from infersweep.config.quirks import ModelQuirks
from infersweep.config.sweep import load_sweep
from infersweep.plan.groups import group_jobs
from infersweep.plan.planner import PlanFilters, expand_jobs
from infersweep.recipes import rules
from infersweep.recipes.preflight import preflight
from infersweep.recipes.vllm import build_recipe

from .conftest import make_group


def _flag(argv: tuple[str, ...], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_quirk_context_raises_the_served_length_only_upwards() -> None:
    group = make_group(isl=128, osl=64, max_model_len=448)
    wider = rules.with_quirk_context(group, ModelQuirks(**{"max-model-len": 2048}))
    assert wider.max_model_len == 2048 and wider.id == group.id
    assert rules.with_quirk_context(group, ModelQuirks(**{"max-model-len": 300})) is group
    assert rules.with_quirk_context(group, ModelQuirks()) is group
    assert rules.with_quirk_context(group, None) is group


def test_recipe_and_preflight_use_the_quirk_context() -> None:
    group = make_group(isl=128, osl=64, max_model_len=448)
    quirks = ModelQuirks(**{"max-model-len": 2048})
    assert _flag(build_recipe(group, quirks).argv, "--max-model-len") == "2048"
    assert _flag(build_recipe(group, None).argv, "--max-model-len") == "448"
    assert preflight(group, quirks).to_json()["max_model_len"] == 2048
    assert preflight(group, None).to_json()["max_model_len"] == 448


def test_the_max_model_len_quirk_is_a_dedicated_field_not_an_extra_flag() -> None:
    group = make_group(isl=128, osl=64, max_model_len=448)
    from infersweep.recipes.errors import RecipeError

    with pytest.raises(RecipeError, match="--max-model-len"):
        build_recipe(group, ModelQuirks(**{"extra-serve-flags": ("--max-model-len", "2048")}))


def test_smollm2_cpu_sweep_builds_the_cpu_recipe(repo_root: Path) -> None:
    sweep = load_sweep([repo_root / "configs" / "smollm2-cpu.yaml"])
    (group,) = group_jobs(expand_jobs(sweep, PlanFilters(single_node=True)))
    assert (group.isl, group.osl, group.concs, group.eval_concs) == (128, 64, (1, 2, 4), (4,))
    quirks = sweep.quirks_for(group.model_prefix, "/some/local/dir")  # a local model still finds its family
    recipe = build_recipe(group, quirks, served_model_name="smollm2-135m")
    argv = recipe.argv
    assert argv[:2] == ("vllm", "serve") and "--enforce-eager" in argv
    assert _flag(argv, "--dtype") == "float32" and _flag(argv, "--max-model-len") == "2048"
    assert recipe.env["VLLM_CPU_KVCACHE_SPACE"] == "1" and recipe.env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    assert recipe.env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0" and recipe.env["HF_HUB_OFFLINE"] == "1"
    assert recipe.ready_timeout_s == 600
    key = next(iter(sweep.entries))
    ev = sweep.eval_for(key)
    assert ev.limit == 20 and ev.threshold_for("smollm2") == 0.0
    assert sweep.settings_for(key).engine == "vllm-process"
    assert sweep.settings_for(key).bench.random_range_ratio == 1.0


def test_a_zero_threshold_is_allowed_and_a_negative_one_is_not(tmp_path: Path, repo_root: Path) -> None:
    text = (repo_root / "configs" / "smollm2-cpu.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("default-threshold: 0.0", "default-threshold: -0.1"))
    with pytest.raises(ConfigError, match="default-threshold"):
        load_sweep([bad])
