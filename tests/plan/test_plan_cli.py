"""`infersweep plan` output shapes and exit codes (typer CliRunner, repo configs only)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from infersweep.cli import app
from infersweep.plan.models import INFERENCEX_JOB_KEYS

GROUP_KEYS = {"id", "config-key", "runner", "isl", "osl", "tp", "ep", "dp-attn", "spec-decoding", "concs",
              "eval-concs", "gpus", "memory"}


def run(*args: str) -> object:
    return CliRunner().invoke(app, ["plan", *args])


def test_groups_format(repo_root: Path) -> None:
    """--format groups: a JSON array, one object per group with the contract keys, concs ascending."""
    result = run(str(repo_root / "configs" / "demo.yaml"), "--format", "groups")
    assert result.exit_code == 0, result.stderr
    groups = json.loads(result.stdout)
    assert len(groups) == 3
    for group in groups:
        assert GROUP_KEYS <= set(group)
        assert group["concs"] == sorted(group["concs"])
        assert set(group["eval-concs"]) <= set(group["concs"])
        assert group["memory"] is None or group["memory"]["verdict"] in {"fits", "tight", "cannot-fit", "unknown"}
    assert [g["gpus"] for g in groups] == [1, 2, 4]


def test_inferencex_format_keys(repo_root: Path) -> None:
    result = run(str(repo_root / "configs" / "demo.yaml"), "--format", "inferencex")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 12 and all(tuple(r) == INFERENCEX_JOB_KEYS for r in rows)


def test_json_format_has_summary_groups_and_jobs(repo_root: Path) -> None:
    result = run(str(repo_root / "configs" / "demo.yaml"), "--format", "json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["summary"]["jobs"] == 12 and plan["summary"]["groups"] == 3
    assert plan["summary"]["boots-saved"] == 9
    assert {j["group-id"] for j in plan["jobs"]} == {g["id"] for g in plan["groups"]}
    assert all(j["config-key"] == "llama3.1-8b-bf16-sim-h100-vllm" for j in plan["jobs"])


def test_table_format_and_filters(repo_root: Path) -> None:
    """The table shows counts and the saving; filters narrow the plan."""
    result = run(str(repo_root / "configs" / "demo.yaml"), "--max-tp", "2", "--min-conc", "4")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("plan: 4 jobs (2 with eval) in 2 serve groups from 1 config key")
    assert "boots: 4 → 2 (2 server starts saved)" in result.stdout


def test_bad_config_exit_2_errors_on_stderr_only(repo_root: Path) -> None:
    """Bad input: exit code 2, the full error list on stderr, nothing on stdout."""
    bad = repo_root / "tests" / "fixtures" / "bad_configs" / "many_errors.yaml"
    result = run(str(bad), "--format", "inferencex")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "6 configuration errors:" in result.stderr
    assert result.stderr.count("many_errors.yaml:") == 6


def test_bad_filter_exit_2(repo_root: Path) -> None:
    result = run(str(repo_root / "configs" / "demo.yaml"), "--runner-type", "h999")
    assert result.exit_code == 2 and result.stdout == ""
    assert "invalid runner type(s): h999" in result.stderr
    result = run(str(repo_root / "configs" / "demo.yaml"), "--min-conc", "64", "--max-conc", "4")
    assert result.exit_code == 2 and "min_conc" in result.stderr


def test_prune_drops_cannot_fit_groups(tmp_path: Path) -> None:
    """--prune drops a group the preflight says cannot fit, and says why on stderr."""
    (tmp_path / "s.yaml").write_text(
        "sweep: s\nquirks: {big: {checkpoint-bytes: 854000000000}}\n"
        "entries:\n  big-bf16-h100-vllm:\n    image: vllm/vllm-openai:v1\n    model: org/big\n"
        "    model-prefix: big\n    runner: h100\n    precision: bf16\n    framework: vllm\n    multinode: false\n"
        "    scenarios:\n      fixed-seq-len:\n      - isl: 1024\n        osl: 1024\n        search-space:\n"
        "        - {tp: 8, conc-list: [4, 8]}\n        - {tp: 4, conc-list: [4]}\n"
        "inventory:\n  h100: [{name: n0, gpu-memory-gb: 80}]\n")
    result = run(str(tmp_path / "s.yaml"), "--prune", "--format", "groups")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == []
    assert result.stderr.count("pruned ") == 2 and "cannot fit" in result.stderr
