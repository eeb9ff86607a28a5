"""Shared helpers of the perf/client_*.py scripts: a pinned mock server subprocess and CPU accounting."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
TOKENIZER = str(ROOT / "tests" / "fixtures" / "tokenizer")
#: The real-vLLM (CPU) lane's venv, made by scripts/real_engine/install.sh.
VENV_VLLM = ROOT / ".venv-vllm"


def real_lane_model() -> Path | None:
    """The real-vLLM lane's converted model, with the lane's `vllm` set for the product's process engine and
    the hub offline; None (after printing a SKIP line) when scripts/real_engine/install.sh has not run."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.real_engine.test_real_chain import real_model_dir  # one definition of the cache path

    model = real_model_dir()
    if not (VENV_VLLM / ".installed").exists() or not (model / ".converted").exists():
        print(f"SKIP: needs {VENV_VLLM} and {model}: run scripts/real_engine/install.sh first")
        return None
    os.environ.setdefault("INFERSWEEP_VLLM_BIN", str(VENV_VLLM / "bin" / "vllm"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return model


def pin(cores: set[int] | None):
    """preexec_fn pinning a child to ``cores`` (None: leave it)."""
    if not cores:
        return None
    return lambda: os.sched_setaffinity(0, cores)


@contextlib.contextmanager
def mock_server(*args: str, cores: set[int] | None = None) -> Iterator[str]:
    """Run `python -m infersweep.bench.mock ARGS` (uvloop) and yield its base URL; killed on exit."""
    proc = subprocess.Popen(
        [PY, "-m", "infersweep.bench.mock", "--port", "0", *args],
        stdout=subprocess.PIPE, text=True, preexec_fn=pin(cores),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"mock did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def get_json(url: str) -> object:
    """GET ``url`` and decode JSON (5 s timeout)."""
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def run_json(cmd: list[str], cores: set[int] | None = None, timeout: float = 900.0) -> dict:
    """Run ``cmd`` (pinned), return the JSON printed on its last stdout line."""
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=pin(cores), check=False
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed rc={out.returncode}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours_cmd(
    url: str, conc: int, n: int, isl: int, osl: int, workers: int | str = 1, warm: int | None = None
) -> list[str]:
    """Our client in a fresh interpreter; prints the result's headline + client_health as JSON."""
    code = (
        "import json,sys;from infersweep.bench import BenchConfig, run_benchmark;"
        f"r=run_benchmark(BenchConfig(base_url={url!r},model='mock',tokenizer={TOKENIZER!r},isl={isl},osl={osl},"
        f"conc={conc},num_prompts={n},warmups={warm if warm is not None else conc},workers={workers!r},"
        "fail_on_length_violation=False));"
        "h=r['infersweep']['client_health'];"
        "print(json.dumps({'client':'infersweep','conc':r['max_concurrency'],'duration_s':r['duration'],"
        "'cpu_s':h['cpu_seconds'],'events':h['stream_events'],'failed':r['failed'],"
        "'tokens':r['total_output_tokens'],'median_ttft_ms':r['median_ttft_ms'],'workers':h['processes'],"
        "'lag_p99_ms':h['loop_lag_ms']['p99']}))"
    )
    return [PY, "-c", code]


def loadavg() -> str:
    """The 1-minute load average, for the figures' context."""
    return f"{os.getloadavg()[0]:.1f}"


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
