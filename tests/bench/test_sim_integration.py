"""One integration run against the simulated engine (`infersweep sim serve` in a subprocess)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from infersweep.bench import BenchConfig, run_benchmark
from tests.procs import stop_process_groups

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def sim_url(tokenizer_dir):
    try:
        import infersweep.engines.sim.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"simulated engine not available: {exc}")
    port = _free_port()
    cmd = [sys.executable, "-m", "infersweep.cli", "sim", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--model", "sim-model", "--tokenizer", str(tokenizer_dir), "--time-scale", "200"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                pytest.skip(f"sim serve exited rc={proc.returncode}: {proc.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("sim serve did not become healthy within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        stop_process_groups([proc], grace_s=15)


@pytest.mark.parametrize("chat", [False, True])
def test_against_simulated_engine(sim_url, tokenizer_dir, chat):
    cfg = BenchConfig(
        base_url=sim_url, model="sim-model", tokenizer=str(tokenizer_dir), isl=64, osl=16, conc=4,
        num_prompts=12, warmups=4, chat=chat, save_detailed=True,
    )  # fmt: skip
    res = run_benchmark(cfg)
    assert res["completed"] == 12, res["errors"]
    lc = res["infersweep"]["length_check"]
    assert lc["violations"] == 0, lc
    assert res["input_lens"] == [64] * 12 and res["output_lens"] == [16] * 12
    assert res["infersweep"]["passed"], res["infersweep"]["fail_reasons"]
    for ttft, e2el, tpot in zip(
        res["ttfts"], res["latencies"], res["infersweep"]["per_request_tpot_s"], strict=True
    ):
        assert 0 < ttft <= e2el and tpot == pytest.approx((e2el - ttft) / 15)
