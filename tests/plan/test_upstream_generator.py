"""Planner parity against InferenceX's own generator at 843c6254f, run as a subprocess from ../shared.

`infersweep plan … --format inferencex` must print exactly what upstream's `generate_sweep_configs.py
full-sweep` prints for today's master files, with `--single-node`, `--multi-node` or neither: every row
(fixed-seq-len and agentic-coding, single- and multinode), every field, the same order, byte for byte. The
generator is a test oracle only; the product never imports it. Skips, with the reason, where ../shared or
the generator is absent.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from infersweep.cli import app

MASTERS = ("nvidia-master.yaml", "amd-master.yaml")


def _generator(reference: Path) -> Path:
    script = reference / "utils" / "matrix_logic" / "generate_sweep_configs.py"
    if not script.exists():
        pytest.skip(f"upstream generator not found at {script}")
    return script


def _upstream(reference: Path, fixtures: Path, mode: str, *args: str) -> list[dict[str, Any]]:
    """The generator's rows for `mode` (full-sweep | test-config) with `args`."""
    argv = [sys.executable, str(_generator(reference)), mode, "--config-files",
            *(str(fixtures / m) for m in MASTERS), "--runner-config", str(fixtures / "runners.yaml"), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def _ours_text(fixtures: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["plan", *(str(fixtures / m) for m in MASTERS), "--runners",
                                      str(fixtures / "runners.yaml"), "--format", "inferencex", *args])
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _ours(fixtures: Path, *args: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(_ours_text(fixtures, "--single-node", *args))
    return rows


def _assert_same_rows(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> None:
    """Multiset equality first (with the first differences named), then order and key order."""
    def key(row: dict[str, Any]) -> str:
        return json.dumps(row, sort_keys=True)

    a, b = collections.Counter(map(key, ours)), collections.Counter(map(key, theirs))
    missing, extra = list((b - a).elements()), list((a - b).elements())
    assert not missing and not extra, (
        f"{len(missing)} rows missing, {len(extra)} extra; first missing: {missing[:2]}; first extra: {extra[:2]}")
    assert ours == theirs
    assert [list(r) for r in ours] == [list(r) for r in theirs], "same rows, but the keys come in another order"


@pytest.fixture(scope="module")
def full_sweep(inferencex_reference_today: Path, inferencex_today_dir: Path) -> list[dict[str, Any]]:
    return _upstream(inferencex_reference_today, inferencex_today_dir, "full-sweep", "--single-node")


def test_full_single_node_sweep_is_identical(full_sweep: list[dict[str, Any]], inferencex_today_dir: Path) -> None:
    """1,172 rows: 690 fixed-seq-len (with pp/dcp-size/pcp-size) and 482 agentic-coding (router, backend)."""
    ours = _ours(inferencex_today_dir)
    _assert_same_rows(ours, full_sweep)
    kinds = collections.Counter(r.get("scenario-type", "fixed-seq-len") for r in ours)
    assert kinds == {"fixed-seq-len": 690, "agentic-coding": 482}
    agentic = [r for r in ours if r.get("scenario-type") == "agentic-coding"]
    assert {r["duration"] for r in agentic} == {3600}
    # The DRAM budget comes from runners.yaml hardware: and dram-utilization, not a constant.
    assert len({r["total-cpu-dram-gb"] for r in agentic if r["kv-offloading"] == "dram"}) > 3
    assert sum("router" in r for r in agentic) == 40 and sum("kv-offload-backend" in r for r in agentic) == 178


@pytest.mark.parametrize("mode", ["--multi-node", "both"])
def test_multinode_rows_are_identical_byte_for_byte(inferencex_reference_today: Path, inferencex_today_dir: Path,
                                                    mode: str) -> None:
    """648 multinode rows (384 fixed-seq-len with eval-conc, 264 agentic), pools as written plus pp/dcp/pcp;
    without a node filter, all 1,820 rows. The printed JSON is the generator's, byte for byte."""
    args = () if mode == "both" else (mode,)
    script = _generator(inferencex_reference_today)
    argv = [sys.executable, str(script), "full-sweep", *args, "--config-files",
            *(str(inferencex_today_dir / m) for m in MASTERS), "--runner-config", str(inferencex_today_dir / "runners.yaml")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    ours = _ours_text(inferencex_today_dir, *args)
    _assert_same_rows(json.loads(ours), json.loads(done.stdout))
    assert ours.strip() == done.stdout.strip()
    rows = json.loads(ours)
    assert len(rows) == (648 if args else 1820)
    assert sum("eval-conc" in r for r in rows) > 0


@pytest.mark.parametrize("args", [
    ("--max-conc", "64", "--min-conc", "8"),
    ("--max-conc", "2"),
    ("--model-prefix", "dsv4", "--precision", "fp4"),
    ("--framework", "vllm", "atom"),
    ("--runner-type", "mi355x", "b200"),
    ("--seq-lens", "1k1k"),
    ("--max-tp", "4", "--max-ep", "2"),
], ids=["conc-window", "max-conc-below-all", "prefix-precision", "frameworks", "runner-types", "seq-lens", "tp-ep"])
def test_filters_match(inferencex_reference_today: Path, inferencex_today_dir: Path, args: tuple[str, ...]) -> None:
    """Every filter family of `full-sweep`, on both scenario types (agentic rows ignore seq-lens and max-tp)."""
    theirs = _upstream(inferencex_reference_today, inferencex_today_dir, "full-sweep", "--single-node", *args)
    ours_args: list[str] = []
    flag = ""
    for arg in args:  # upstream takes `--framework a b`; ours repeats the option
        if arg.startswith("--"):
            flag = arg
        else:
            ours_args += [flag, arg]
    _assert_same_rows(_ours(inferencex_today_dir, *ours_args), theirs)


def test_config_keys_match_test_config_mode(inferencex_reference_today: Path, inferencex_today_dir: Path) -> None:
    """`--config-keys` (globs, in the order given) is upstream's `test-config`; its single-node rows are ours."""
    theirs = _upstream(inferencex_reference_today, inferencex_today_dir, "test-config",
                       "--config-keys", "qwen3.5-fp8-h200-sglang", "dsv4-*")
    single = [r for r in theirs if "prefill" not in r]
    ours = _ours(inferencex_today_dir, "--config-keys", "qwen3.5-fp8-h200-sglang", "--config-keys", "dsv4-*")
    _assert_same_rows(ours, single)
