"""Per-GPU throughput of a disaggregated point equals InferenceX's process_result (843c6254f, run as the oracle)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infersweep.bench import BenchConfig
from infersweep.bench.result import per_gpu_throughput
from tests.conftest import SHARED

UTILS = SHARED / "reference" / "inferencex-843c6254f" / "utils"


def _cfg(**kw: int | None) -> BenchConfig:
    return BenchConfig(base_url="http://127.0.0.1:1", model="m", tokenizer="t", isl=1024, osl=128, conc=8, **kw)


def test_aggregated_divides_by_every_gpu() -> None:
    got = per_gpu_throughput(900.0, 300.0, _cfg(gpus=3))
    assert got == {"tput_per_gpu": 300.0, "output_tput_per_gpu": 100.0, "input_tput_per_gpu": 200.0}


@pytest.mark.parametrize(("prefill", "decode"), [(8, 16), (4, 0)])
def test_disaggregated_matches_process_result(tmp_path: Path, prefill: int, decode: int) -> None:
    if not (UTILS / "process_result.py").exists():
        pytest.skip(f"InferenceX reference not found at {UTILS} (the shared/ reference folder is absent here)")
    total, output = 12_345.0, 2_345.0
    (tmp_path / "res.json").write_text(json.dumps({
        "max_concurrency": 8, "model_id": "m", "total_token_throughput": total, "output_throughput": output,
        "median_tpot_ms": 20.0, "median_ttft_ms": 100.0, "median_e2el_ms": 2000.0, "median_itl_ms": 20.0}))
    env = {
        "RUNNER_TYPE": "gb200", "FRAMEWORK": "dynamo-sglang", "PRECISION": "fp8", "SPEC_DECODING": "none",
        "RESULT_FILENAME": "res", "ISL": "1024", "OSL": "128", "DISAGG": "true", "MODEL_PREFIX": "m", "IMAGE": "i",
        "IS_MULTINODE": "true", "PREFILL_GPUS": str(prefill), "DECODE_GPUS": str(decode),
        "PREFILL_NUM_WORKERS": "1", "PREFILL_TP": str(prefill), "PREFILL_EP": "1", "PREFILL_DP_ATTN": "false",
        "DECODE_NUM_WORKERS": "2" if decode else "0", "DECODE_TP": "8", "DECODE_EP": "1", "DECODE_DP_ATTN": "false",
    }  # fmt: skip
    proc = subprocess.run([sys.executable, str(UTILS / "process_result.py")], cwd=tmp_path, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads((tmp_path / "agg_res.json").read_text())
    ours = per_gpu_throughput(total, output, _cfg(gpus=prefill + decode, prefill_gpus=prefill, decode_gpus=decode))
    for key in ("tput_per_gpu", "output_tput_per_gpu", "input_tput_per_gpu", "num_prefill_gpu", "num_decode_gpu"):
        assert ours[key] == pytest.approx(theirs[key]), key
