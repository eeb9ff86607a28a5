"""The client against the simulator in each framework's flavour: SGLang and TensorRT-LLM stream several
tokens per SSE event (`--stream-interval`, `stream_interval`), so ITL has one entry per event, as vLLM's own
client counts it, while token counts (and so TPOT) come from the usage chunk and stay exact."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from infersweep.bench import BenchConfig, run_benchmark
from infersweep.engines.readiness import health_path, wait_ready
from infersweep.engines.sim.config import sim_command


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_events(base: str, flavor: str) -> int:
    """The simulator's count of token-carrying stream writes (`sim:stream_events_total`)."""
    import httpx

    path = "/prometheus/metrics" if flavor == "trt" else "/metrics"
    for line in httpx.get(base + path, timeout=10).text.splitlines():
        if line.startswith("sim:stream_events_total "):
            return int(float(line.split()[1]))
    raise AssertionError(f"no sim:stream_events_total at {path}")


@pytest.mark.integration  # a simulator server in a subprocess
@pytest.mark.parametrize(("flavor", "interval"), [("sglang", 10), ("trt", 4), ("vllm", 1)])
def test_itl_per_event_and_exact_token_counts_per_flavor(flavor: str, interval: int, tokenizer_dir) -> None:
    port = _free_port()
    # Near real time (a few ms per step): a simulator that falls behind its schedule merges steps into one
    # event, as vLLM's output collector does for a slow consumer, and the event count is then the machine's.
    cmd = sim_command(["sim", "serve", "--model-profile", "llama-3.1-8b", "--flavor", flavor, "--stream-interval",
                       str(interval), "--port", str(port), "--time-scale", "2"], sys.executable)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        info = wait_ready(base, deadline_s=60, is_alive=lambda: proc.poll() is None, logs=lambda n: "",
                          poll_interval_s=0.2, health=health_path(flavor))
        osl = 25
        res = run_benchmark(BenchConfig(base_url=base, model=info.models[0], tokenizer=str(tokenizer_dir), isl=32,
                                        osl=osl, conc=2, num_prompts=4, warmups=0, save_detailed=True))
        assert res["completed"] == 4 and res["output_lens"] == [osl] * 4  # from usage, not from events
        # One ITL entry per event after the first: the client's events are exactly the server's writes.
        sent = _server_events(base, flavor)
        assert sum(len(gaps) + 1 for gaps in res["itls"]) == sent
        # The first token goes alone, then one event per `interval` tokens: 1 + ceil(24 / interval) events. With
        # interval 1 a simulator behind its schedule (a loaded machine) merges steps, as vLLM's output collector
        # does for a slow consumer, so only the bound holds there.
        events = 1 + -(-(osl - 1) // interval)
        lens = [len(g) + 1 for g in res["itls"]]
        assert all(n == events for n in lens) if interval > 1 else all(n <= events for n in lens), lens
        for ttft, e2el, tpot in zip(res["ttfts"], res["latencies"], res["infersweep"]["per_request_tpot_s"],
                                    strict=True):
            assert tpot == pytest.approx((e2el - ttft) / (osl - 1))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
