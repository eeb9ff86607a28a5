"""Capacity: client CPU per streamed event (µs/event) and events/s against the zero-delay mock.

The mock (uvloop, pre-encoded chunks) is pinned to core 0, every client to core 1, all in the same run and
against the same mock settings (ISL 128, OSL 512, one token per SSE event). CPU is the client process's
user+system time over its measured phase (summed over worker processes in multi-process mode); aiperf is
multi-process with its own services, so its CPU is the whole process tree sampled at 10 Hz over the window
in which the mock was serving. Anchors run only when their throwaway venvs exist (see docs/performance.md).

    .venv/bin/python perf/client_capacity.py [--conc 64 256] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _harness import TOKENIZER, get_json, loadavg, mock_server, now, ours_cmd, pin, run_json

VLLM_PY = Path(os.environ.get("VLLM_ANCHOR_PY", "/tmp/anchors/venv-vllm/bin/python"))
VLLM_SRC = Path(os.environ.get("VLLM_ANCHOR_SRC", "/tmp/anchors/vllmsrc"))
AIPERF = Path(os.environ.get("AIPERF_BIN", "/tmp/anchors/venv-aiperf/bin/aiperf"))
HERE = Path(__file__).resolve().parent
ISL, OSL = 128, 512


def _aiperf(url: str, conc: int, n: int) -> dict:
    """Run aiperf with server token counts; CPU of its process tree while the mock streams."""
    ev0 = get_json(url + "/stats")["events"]  # type: ignore[index]
    with tempfile.TemporaryDirectory() as art:
        cmd = [
            str(AIPERF), "profile", "--model", "mock", "--url", url, "--endpoint-type", "completions",
            "--streaming", "--tokenizer", TOKENIZER, "--isl", str(ISL), "--isl-stddev", "0", "--osl", str(OSL),
            "--osl-stddev", "0", "--extra-inputs", "ignore_eos:true", "--concurrency", str(conc),
            "--request-count", str(n), "--use-server-token-count", "--artifact-dir", art, "--ui-type", "simple",
            "--no-server-metrics", "--no-gpu-telemetry",
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin({1})
        )
        samples: list[tuple[float, int, float]] = []
        root = psutil.Process(proc.pid)

        def sample() -> None:
            while proc.poll() is None:
                try:
                    cpu = 0.0
                    for p in [root, *root.children(recursive=True)]:
                        with __import__("contextlib").suppress(psutil.Error):
                            t = p.cpu_times()
                            cpu += t.user + t.system
                    ev = get_json(url + "/stats")["events"]  # type: ignore[index]
                    samples.append((time.perf_counter(), int(ev), cpu))
                except (psutil.Error, OSError):
                    pass
                time.sleep(0.1)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        proc.wait(timeout=1800)
        th.join(timeout=5)
    busy = [s for s in samples if s[1] > ev0]
    if len(busy) < 2:
        raise RuntimeError("aiperf: no streaming window observed")
    # window from the last sample before streaming started to the first sample at the final count
    start = max((s for s in samples if s[1] <= ev0), key=lambda s: s[0], default=busy[0])
    end = next(s for s in samples if s[1] == busy[-1][1])
    events = end[1] - start[1]
    return {
        "client": "aiperf",
        "conc": conc,
        "duration_s": end[0] - start[0],
        "cpu_s": end[2] - start[2],
        "events": events,
        "failed": None,
        "tokens": None,
        "median_ttft_ms": None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conc", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--prompts-per-conc", type=int, default=4)
    a = ap.parse_args()
    rows = []
    print(f"# client capacity, {now()}, load average {loadavg()} (machine shared with other jobs)")
    with mock_server(cores={0}) as url:
        for c in a.conc:
            n = a.prompts_per_conc * c
            for _ in range(a.repeats):
                runs = [("infersweep (1 process)", ours_cmd(url, c, n, ISL, OSL, workers=1))]
                runs.append(("infersweep (2 processes)", ours_cmd(url, c, n, ISL, OSL, workers=2)))
                if VLLM_PY.exists() and VLLM_SRC.exists():
                    runs.append(("vLLM request func", [str(VLLM_PY), str(HERE / "client_anchor_vllm.py"),
                                 "--vllm-src", str(VLLM_SRC), "--url", url, "--conc", str(c),
                                 "--num-prompts", str(n), "--isl", str(ISL), "--osl", str(OSL)]))  # fmt: skip
                for name, cmd in runs:
                    r = run_json(cmd, cores={1})
                    r["name"] = name
                    rows.append(r)
                if AIPERF.exists():
                    r = _aiperf(url, c, n)
                    r["name"] = "aiperf 0.13 (--use-server-token-count)"
                    rows.append(r)
    print(
        f"{'client':42s} {'C':>4s} {'events':>8s} {'dur s':>7s} {'events/s':>9s} {'CPU s':>6s} {'µs/event':>9s} {'failed':>6s}"
    )
    base = {}
    for r in rows:
        us = 1e6 * r["cpu_s"] / r["events"] if r["events"] else float("nan")
        r["us_per_event"] = us
        if r["name"].startswith("infersweep (1"):
            base[r["conc"]] = us
        print(f"{r['name']:42s} {r['conc']:4d} {r['events']:8d} {r['duration_s']:7.2f} "
              f"{r['events'] / r['duration_s']:9.0f} {r['cpu_s']:6.2f} {us:9.2f} {r['failed']!s:>6s}")  # fmt: skip
    print("\nCPU per event relative to infersweep (1 process):")
    for r in rows:
        if r["conc"] in base:
            print(f"  {r['name']:42s} C={r['conc']:4d}  {r['us_per_event'] / base[r['conc']]:.2f}x")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
