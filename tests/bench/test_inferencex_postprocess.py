"""InferenceX's own post-processing reads our files whole: a real point against the simulated engine with GPU
telemetry, then the reference `utils/process_result.py` and `utils/aggregate_power.py` (843c6254f, Apache-2.0)
run on the result JSON and `gpu_metrics.csv`, as subprocesses from ../shared (never imported by the product)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infersweep.cli import app
from tests.conftest import SHARED

from .conftest import sim_server

UTILS = SHARED / "reference" / "inferencex-843c6254f" / "utils"
CLIENT = SHARED / "reference" / "inferencex-1ef98e3ed" / "utils" / "bench_serving" / "benchmark_serving.py"
TP = 2
ISL, OSL, CONC = 256, 64, 8
#: Lists benchmark_serving.py drops without --save-detailed, which InferenceX's benchmark_lib.sh never passes.
DETAILED_ONLY = {"ttfts", "itls", "generated_texts", "errors"}


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"InferenceX reference not found at {path} (the shared/ reference folder is absent here)")
    return path


def reference_result_keys(client: Path) -> set[str]:
    """Top-level keys benchmark_serving.py writes with --save-result and its default percentile options."""
    tree = ast.parse(client.read_text())
    keys: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "result" for t in node.targets):
            if isinstance(node.value, ast.Dict):
                keys |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if (isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id == "result_json"
                        and isinstance(t.slice, ast.Constant)):
                    keys.add(t.slice.value)
    # per-metric statistics come from f-strings: mean_/median_/std_/p<P>_<metric>_ms for the defaults
    # (--percentile-metrics ttft,tpot,itl,e2el as benchmark_lib.sh passes it, --metric-percentiles 90,99,99.9)
    source = client.read_text()
    assert 'f"p{p_word}_{metric_attribute_name}_ms"' in source and 'default="90,99,99.9"' in source
    stats = ("mean", "median", "std", "p90", "p99", "p99.9")
    keys |= {f"{s}_{m}_ms" for s in stats for m in ("ttft", "tpot", "itl", "e2el")}
    return keys - DETAILED_ONLY


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.integration
def test_process_result_and_aggregate_power_accept_a_real_point(tokenizer_dir, tmp_path):
    utils = _require(UTILS)
    client = _require(CLIENT)
    out = tmp_path / "res.json"
    with sim_server(tokenizer_dir, "--tp", str(TP)) as url:
        r = CliRunner().invoke(app, [
            "bench", "--base-url", url, "--model", "sim-model", "--tokenizer", str(tokenizer_dir),
            "--isl", str(ISL), "--osl", str(OSL), "--conc", str(CONC), "--num-prompts", str(4 * CONC),
            "--num-warmups", str(CONC), "--gpus", str(TP), "--result-file", str(out),
            "--gpu-telemetry", "sim", "--telemetry-interval-s", "0.25",
        ])  # fmt: skip
    assert r.exit_code == 0, r.output
    csv_path = tmp_path / "res_gpu_metrics.csv"
    assert csv_path.is_file() and f"wrote {out} and {csv_path}" in r.output
    res = json.loads(out.read_text())
    ours = res["infersweep"]["energy"]
    assert ours["invalid_reasons"] == [] and ours["gpus"] == TP and ours["simulated"] is True, ours["reason"]
    missing = reference_result_keys(client) - set(res)
    assert not missing, f"keys InferenceX's benchmark_serving.py writes that we do not: {sorted(missing)}"

    env = {  # what InferenceX's workflow exports for a single-node fixed-seq-len job
        "RUNNER_TYPE": "h100", "FRAMEWORK": "vllm", "PRECISION": "bf16", "SPEC_DECODING": "none",
        "RESULT_FILENAME": "res", "ISL": str(ISL), "OSL": str(OSL), "DISAGG": "false", "MODEL_PREFIX": "sim",
        "IMAGE": "sim", "TP": str(TP), "EP_SIZE": "1", "DP_ATTENTION": "false",
        "GPU_METRICS_CSV": str(csv_path), "REQUIRE_POWER": "1",  # fail closed: exit 0 means power is valid
    }  # fmt: skip
    proc = _run([sys.executable, str(utils / "process_result.py")], tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    agg = json.loads((tmp_path / "agg_res.json").read_text())
    assert agg["power_valid"] == 1 and agg["conc"] == CONC and agg["model"] == "sim-model"
    assert agg["tput_per_gpu"] == pytest.approx(res["total_token_throughput"] / TP)

    proc = _run([sys.executable, str(utils / "aggregate_power.py"), "--csv", str(csv_path), "--bench-result",
                 str(out), "--agg-result", str(tmp_path / "agg_res.json"), "--expected-num-gpus", str(TP),
                 "--validation-result", str(tmp_path / "validation.json"), "--require-power"], tmp_path, {})
    assert proc.returncode == 0, proc.stderr[-2000:]
    agg = json.loads((tmp_path / "agg_res.json").read_text())
    sidecar = json.loads((tmp_path / "validation.json").read_text())
    assert agg["power_valid"] == 1 and sidecar["power_valid"] is True and sidecar["reasons"] == []
    assert sidecar["observed_gpu_ids"] == ["0", "1"] and sidecar["integration_method"] == ours["method"]

    theirs = agg["joules_per_output_token"]
    agreement = ours["joules_per_token"] / theirs - 1.0
    print(f"J/output token: ours {ours['joules_per_token']:.9f}, aggregate_power.py {theirs:.6f} "
          f"(rounded to 6 decimals), relative difference {agreement:+.2e}")
    assert abs(agreement) <= 0.005
    assert ours["energy_j"] == pytest.approx(sidecar["metrics"]["total_gpu_energy_j"], rel=0.005)
    for gpu, energy in sidecar["per_gpu_energy_j"].items():
        assert ours["per_gpu_energy_j"][gpu] == pytest.approx(energy, rel=0.005)
