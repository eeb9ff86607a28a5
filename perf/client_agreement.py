"""Agreement: our client and vLLM's request function on identical traffic against the same server.

Both clients send the same shape of traffic (ISL/OSL, C, N, warm-ups) to one mock with a fixed TTFT and
ITL, alternating A B A B; each run's headline metrics are computed with vLLM's formulas (ours natively, the
anchor's by perf/client_anchor_vllm.py). Differences above 1 % are flagged. Needs the anchor venv
(see docs/performance.md); without it, prints why and exits.

    .venv/bin/python perf/client_agreement.py [--conc 16] [--ttft-ms 40] [--itl-ms 8] [--osl 64] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path

import numpy as np
from _harness import PY, TOKENIZER, get_json, loadavg, mock_server, now, run_json
from client_capacity import VLLM_PY, VLLM_SRC

HERE = Path(__file__).resolve().parent
KEYS = ["request_throughput", "output_throughput", "total_token_throughput", "mean_ttft_ms", "median_ttft_ms",
        "mean_tpot_ms", "median_tpot_ms", "mean_itl_ms", "median_itl_ms", "mean_e2el_ms", "median_e2el_ms"]  # fmt: skip


def ours(url: str, a: argparse.Namespace) -> dict:
    keys = repr(KEYS)
    code = (
        "import json;from infersweep.bench import BenchConfig, run_benchmark;"
        f"r=run_benchmark(BenchConfig(base_url={url!r},model='mock',tokenizer={TOKENIZER!r},isl={a.isl},"
        f"osl={a.osl},conc={a.conc},num_prompts={a.num_prompts},warmups={a.conc},workers=1,"
        "fail_on_length_violation=False));"
        f"print(json.dumps({{k: r[k] for k in {keys}}} | {{'client_bound': r['infersweep']['client_bound']}}))"
    )
    return run_json([PY, "-c", code], cores={1})


def anchor(url: str, a: argparse.Namespace) -> dict:
    cmd = [str(VLLM_PY), str(HERE / "client_anchor_vllm.py"), "--vllm-src", str(VLLM_SRC), "--url", url,
           "--conc", str(a.conc), "--num-prompts", str(a.num_prompts), "--isl", str(a.isl), "--osl", str(a.osl)]  # fmt: skip
    return run_json(cmd, cores={1})


def truth(url: str, prefix: str, n: int) -> dict:
    """Mock-side truth over the measured requests (ids prefix-0..n-1): server TTFT and TPOT in ms."""
    st = get_json(url + "/stamps")
    rows = [st[f"{prefix}-{i}"] for i in range(n)]  # type: ignore[index]
    ttft = [1000 * (r["sends"][0] - r["recv"]) for r in rows]
    tpot = [1000 * (r["sends"][-1] - r["sends"][0]) / (len(r["sends"]) - 1) for r in rows]
    return {"mean_ttft_ms": float(np.mean(ttft)), "mean_tpot_ms": float(np.mean(tpot))}


def clear(url: str) -> None:
    req = urllib.request.Request(url + "/stamps", method="DELETE")
    with urllib.request.urlopen(req, timeout=5):
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conc", type=int, default=16)
    ap.add_argument("--num-prompts", type=int, default=160)
    ap.add_argument("--isl", type=int, default=128)
    ap.add_argument("--osl", type=int, default=64)
    ap.add_argument("--ttft-ms", type=float, default=40.0)
    ap.add_argument("--itl-ms", type=float, default=8.0)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    if not (VLLM_PY.exists() and VLLM_SRC.exists()):
        sys.exit(f"anchor venv missing ({VLLM_PY}, {VLLM_SRC}); see docs/performance.md to create it")
    print(f"# agreement, {now()}, load average {loadavg()} (machine shared with other jobs)")
    print(
        f"# mock TTFT {a.ttft_ms} ms, ITL {a.itl_ms} ms; ISL {a.isl} OSL {a.osl} C {a.conc} N {a.num_prompts}"
    )
    res: dict[str, list[dict]] = {"infersweep": [], "vllm": []}
    with mock_server("--ttft-ms", str(a.ttft_ms), "--itl-ms", str(a.itl_ms), "--stamp", cores={0}) as url:
        for _ in range(a.repeats):
            for name, fn, prefix in (("infersweep", ours, "infersweep"), ("vllm", anchor, "vllm")):
                clear(url)
                r = fn(url, a)
                r["truth"] = truth(url, prefix, a.num_prompts)
                res[name].append(r)
    print(f"{'metric':24s} {'infersweep':>12s} {'vLLM':>12s} {'diff %':>8s}")
    worst = 0.0
    for k in KEYS:
        x = float(np.mean([r[k] for r in res["infersweep"]]))
        y = float(np.mean([r[k] for r in res["vllm"]]))
        d = 100.0 * (x - y) / y if y else float("nan")
        worst = max(worst, abs(d))
        print(f"{k:24s} {x:12.3f} {y:12.3f} {d:8.2f}{'  > 1 %' if abs(d) > 1 else ''}")
    print(f"# worst |diff| {worst:.2f} % over {a.repeats} alternating runs each; "
          f"client_bound flags: {[r['client_bound'] for r in res['infersweep']]}")  # fmt: skip
    print("# versus the mock's stamped truth of the same runs (client − truth, mean over runs):")
    for name in ("infersweep", "vllm"):
        for k in ("mean_ttft_ms", "mean_tpot_ms"):
            d = float(np.mean([r[k] - r["truth"][k] for r in res[name]]))
            t = float(np.mean([r["truth"][k] for r in res[name]]))
            print(f"#   {name:10s} {k:14s} truth {t:9.3f}  client − truth {d:+8.3f} ms")


if __name__ == "__main__":
    main()
