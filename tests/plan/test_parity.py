"""InferenceX parity on the shared master files (skips when ../shared is absent)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.config.sweep import Sweep, load_sweep
from infersweep.plan.groups import group_jobs
from infersweep.plan.models import INFERENCEX_JOB_KEYS, LEGACY_AGENTIC_JOB_KEYS
from infersweep.plan.planner import PlanFilters, expand, expand_jobs

MINIMAX_HOPPER = ("minimaxm3-fp8-h200-vllm", "minimaxm3-fp8-h100-vllm")


@pytest.fixture(scope="module")
def fleet(inferencex_dir: Path) -> Sweep:
    return load_sweep([inferencex_dir / "nvidia-master.yaml", inferencex_dir / "amd-master.yaml"],
                      runners=inferencex_dir / "runners.yaml")


def test_fleet_job_set_matches_reference(fleet: Sweep) -> None:
    """`full-sweep --single-node` on both master files: 2,577 jobs, 357 with run-eval."""
    jobs = expand_jobs(fleet, PlanFilters(single_node=True))
    assert len(jobs) == 2577
    assert sum(j.run_eval for j in jobs) == 357
    assert all(tuple(j.to_inferencex()) == INFERENCEX_JOB_KEYS for j in jobs)


def test_fleet_groups(fleet: Sweep) -> None:
    """Serve groups boot each model once per topology: 534 boots instead of 2,577."""
    assert len(group_jobs(expand_jobs(fleet, PlanFilters(single_node=True)))) == 534


def test_unsupported_work_is_counted_not_dropped(fleet: Sweep) -> None:
    """Multinode (653 reference rows) is counted; agentic (402 rows) is counted, its 390 single-node rows planned."""
    expansion = expand(fleet)
    unsupported = expansion.unsupported
    assert (unsupported.multinode_rows, unsupported.multinode_keys) == (653, 54)
    assert (unsupported.agentic_rows, unsupported.agentic_keys) == (402, 31)
    assert len(expansion.agentic) == 390
    assert expand(fleet, PlanFilters(single_node=True)).unsupported.excluded_multinode_keys == 56


def test_minimax_hopper_groups(fleet: Sweep) -> None:
    """The seed sweep: 45 jobs in 13 groups; evals at H200 8k1k 64/256/512 and H100 8k1k 64/256."""
    jobs = expand_jobs(fleet, PlanFilters(config_keys=MINIMAX_HOPPER))
    groups = group_jobs(jobs)
    assert (len(jobs), len(groups)) == (45, 13)
    evals = sorted((j.runner, j.isl, j.tp, j.ep, j.dp_attn, j.conc) for j in jobs if j.run_eval)
    assert evals == [
        ("h100", 8192, 8, 1, False, 64), ("h100", 8192, 8, 8, False, 256),
        ("h200", 8192, 8, 1, False, 64), ("h200", 8192, 8, 8, False, 256), ("h200", 8192, 8, 8, True, 512),
    ]
    dep = next(g for g in groups if g.runner == "h200" and g.dp_attn and g.isl == 1024)
    assert dep.concs == (256, 512, 1024) and dep.gpus == 8


def test_runner_warnings_for_labels_missing_from_runners_yaml(fleet: Sweep) -> None:
    """The shared masters use labels runners.yaml lacks; InferenceX accepts them, so we warn."""
    labels = {w.message for w in fleet.warnings}
    assert labels == {"unknown runner label 'b200-dsv4'", "unknown runner label 'gb300-nv'",
                      "unknown runner label 'h100-dgxc'"}


def test_cli_inferencex_format(inferencex_dir: Path) -> None:
    """The issue's command prints the reference job set as a JSON array with exactly the reference keys."""
    result = CliRunner().invoke(app, [
        "plan", str(inferencex_dir / "nvidia-master.yaml"), str(inferencex_dir / "amd-master.yaml"),
        "--runners", str(inferencex_dir / "runners.yaml"), "--single-node", "--format", "inferencex",
    ])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    fixed = [r for r in rows if "scenario-type" not in r]
    agentic = [r for r in rows if r.get("scenario-type") == "agentic-coding"]
    assert (len(fixed), len(agentic)) == (2577, 390)
    assert sum(r["run-eval"] for r in fixed) == 357
    assert {tuple(r) for r in fixed} == {INFERENCEX_JOB_KEYS}
    # June files keep the June generator's agentic row (offloading, duration from the config).
    assert {tuple(r) for r in agentic} == {LEGACY_AGENTIC_JOB_KEYS}
    first = rows[0]
    assert first["max-model-len"] == first["isl"] + first["osl"] + 256
    assert first["exp-name"] == f"{first['model-prefix']}_1k1k"


def test_cli_table_prints_the_saving(inferencex_dir: Path) -> None:
    """The human table leads with counts and the boot saving."""
    result = CliRunner().invoke(app, [
        "plan", str(inferencex_dir / "nvidia-master.yaml"), str(inferencex_dir / "amd-master.yaml"),
        "--single-node", "--format", "table",
    ])
    assert result.exit_code == 0, result.stderr
    assert "boots: 2,577 → 534 (2,043 server starts saved)" in result.stdout
    assert "excluded by --single-node: 56 multinode config keys" in result.stdout
    assert "agentic-coding: planned, not executed: 390 jobs (28 config keys)" in result.stdout


def test_june_agentic_rows_keep_the_june_generator_shape(fleet: Sweep) -> None:
    """The June files' 390 single-node agentic rows, as InferenceX's generator at 1ef98e3ed wrote them.

    That generator is not in ../shared; these rows and counts were taken from its output on the same files
    (all 390 rows matched as a multiset when this test was written).
    """
    rows = [a.to_inferencex() for a in expand(fleet, PlanFilters(single_node=True)).agentic]
    assert len(rows) == 390
    assert collections.Counter(r["offloading"] for r in rows) == {"none": 240, "cpu": 122, "hicache": 16, "lmcache": 12}
    assert {r["duration"] for r in rows} == {1800}
    assert rows[0] == {
        "image": "vllm/vllm-openai:v0.20.0-cu130", "model": "deepseek-ai/DeepSeek-V4-Pro", "model-prefix": "dsv4",
        "precision": "fp4", "framework": "vllm", "runner": "b200-dgxc", "tp": 8, "ep": 1, "dp-attn": False,
        "conc": 16, "offloading": "cpu", "duration": 1800, "exp-name": "dsv4_tp8_conc16_offloadcpu",
        "scenario-type": "agentic-coding"}
    assert rows[-1]["exp-name"] == "dsv4_tp8_conc256_offloadnone" and rows[-1]["dp-attn"] is True
