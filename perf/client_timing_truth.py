"""Timing truth: the client's TTFT and TPOT against the mock's own stamped send times, per request.

The mock (pinned to core 0) stamps when it received each request and when it wrote each event
(``GET /stamps``, keyed by our ``X-Request-Id``). Truth TTFT = first write − receipt; truth TPOT =
(last write − first write)/(n − 1). The client (pinned to core 1) must match both within 0.5 ms at p99
for C = 1, 64, 256; the difference is transport + client processing, so it is also the client's overhead.

    .venv/bin/python perf/client_timing_truth.py [--ttft-ms 30] [--itl-ms 10] [--osl 64]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import orjson
import uvloop
from _harness import TOKENIZER, get_json, loadavg, mock_server, now
from _rawclient import run_raw

from infersweep.bench import BenchConfig
from infersweep.bench.dataset import build_requests
from infersweep.bench.health import summarize_health
from infersweep.bench.metrics import request_tpot
from infersweep.bench.runner import run_shard
from infersweep.bench.tokenizer import load_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ttft-ms", type=float, default=30.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--isl", type=int, default=128)
    ap.add_argument("--osl", type=int, default=64)
    ap.add_argument("--conc", type=int, nargs="+", default=[1, 64, 256])
    ap.add_argument("--min-requests", type=int, default=100, help="per C; p99 of 20 samples is their max")
    ap.add_argument("--random-range-ratio", type=float, default=1.0, help="0.8 de-synchronises the waves")
    a = ap.parse_args()
    os.sched_setaffinity(0, {1})
    print(f"# timing truth, {now()}, load average {loadavg()} (machine shared with other jobs)")
    print(
        f"# mock: TTFT {a.ttft_ms} ms, ITL {a.itl_ms} ms, ISL {a.isl}, OSL {a.osl}, range ratio "
        f"{a.random_range_ratio}; diffs = client − mock truth"
    )
    print(
        f"{'C':>4s} {'n':>5s} | {'TTFT p50':>8s} {'p99':>7s} | {'TPOT p50':>8s} {'p99':>7s} | "
        f"{'deliver p50':>11s} {'p99':>7s} | {'send→recv p50':>13s} {'p99':>7s} | ok | "
        f"{'TTFT(write) p50':>15s} {'p99':>7s} ok | client lag p99"
    )
    floors: list[tuple[int, int, list[float], list[float], list[float]]] = []
    with mock_server("--ttft-ms", str(a.ttft_ms), "--itl-ms", str(a.itl_ms), "--stamp", cores={0}) as url:
        for c in a.conc:
            n = max(a.min_requests, 2 * c)
            cfg = BenchConfig(base_url=url, model="mock", tokenizer=TOKENIZER, isl=a.isl, osl=a.osl, conc=c,
                              num_prompts=n, warmups=min(c, 32), workers=1,
                              random_range_ratio=a.random_range_ratio)  # fmt: skip
            tok = load_tokenizer(TOKENIZER)
            specs = build_requests(cfg, tok, n)
            warm = build_requests(cfg, tok, cfg.n_warmups, offset=n)
            run = uvloop.run(run_shard(cfg, warm, specs, c, None))
            health = summarize_health(run.health)
            stamps = get_json(url + "/stamps")
            d_ttft, d_ttft_w, d_tpot, deliver, sendrecv = [], [], [], [], []
            for rec in run.records:
                st = stamps[f"infersweep-{rec.index}"]  # type: ignore[index]
                sends = st["sends"]
                d_ttft.append(rec.ttft - (sends[0] - st["recv"]))
                d_ttft_w.append((rec.read_times[0] - rec.t_written) - (sends[0] - st["recv"]))
                d_tpot.append((request_tpot(rec) or 0.0) - (sends[-1] - sends[0]) / (len(sends) - 1))
                arrivals = [t for t, k in zip(rec.read_times, rec.read_events, strict=True) for _ in range(k)]
                deliver.extend(x - y for x, y in zip(arrivals, sends, strict=True))
                sendrecv.append(st["recv"] - rec.t_sent)

            def q(xs: list[float], pct: float, absolute: bool = True) -> float:
                arr = np.asarray(xs) * 1000
                return float(np.percentile(np.abs(arr) if absolute else arr, pct))

            # the transport floor in the same run: a raw-socket client against the same mock, same traffic
            port = int(url.rsplit(":", 1)[1])
            prompts = [orjson.loads(r.body)["prompt"] for r in specs]
            raw = uvloop.run(run_raw(port, [orjson.loads(r.body)["prompt"] for r in warm], prompts, a.osl, c))
            stamps = get_json(url + "/stamps")
            f_ttft = [r.ttft - (stamps[r.rid]["sends"][0] - stamps[r.rid]["recv"]) for r in raw]  # type: ignore[index]
            f_tpot = [
                r.tpot
                - (stamps[r.rid]["sends"][-1] - stamps[r.rid]["sends"][0]) / (len(stamps[r.rid]["sends"]) - 1)  # type: ignore[index]
                for r in raw
            ]
            floors.append((c, len(raw), f_ttft, f_tpot, d_ttft))
            ok = q(d_ttft, 99) <= 0.5 and q(d_tpot, 99) <= 0.5
            ok_w = q(d_ttft_w, 99) <= 0.5 and q(d_tpot, 99) <= 0.5
            print(
                f"{c:4d} {n:5d} | {q(d_ttft, 50):8.3f} {q(d_ttft, 99):7.3f} | {q(d_tpot, 50):8.4f} {q(d_tpot, 99):7.4f} | "
                f"{q(deliver, 50):11.3f} {q(deliver, 99):7.3f} | {q(sendrecv, 50):13.3f} {q(sendrecv, 99):7.3f} | "
                f"{'yes' if ok else 'NO'} | {q(d_ttft_w, 50):8.3f} {q(d_ttft_w, 99):7.3f} {'yes' if ok_w else 'NO'} | "
                f"{health['loop_lag_ms']['p99']:.2f} ms"  # type: ignore[index]
            )
    print(
        "# all figures in ms, absolute differences; deliver = client read time − mock write time per event;"
    )
    print(
        "# send→recv = mock receipt − client send (includes the mock's own scheduling delay on a busy core)"
    )
    print("# TTFT(write) = first read − the moment aiohttp wrote the request (its request path excluded)")
    print()
    print("# transport floor: a raw-socket client (perf/_rawclient.py) against the same mock, same traffic")
    print(f"{'C':>4s} {'n':>5s} | {'floor TTFT p50':>14s} {'p99':>7s} | {'floor TPOT p50':>14s} {'p99':>7s} | "
          f"{'ours − floor: TTFT p50':>22s} {'p99':>7s}")  # fmt: skip

    def pct(xs: list[float], p: float) -> float:
        return float(np.percentile(np.abs(np.asarray(xs)) * 1000, p))

    for c, n, f_ttft, f_tpot, d_ttft in floors:
        print(
            f"{c:4d} {n:5d} | {pct(f_ttft, 50):14.3f} {pct(f_ttft, 99):7.3f} | {pct(f_tpot, 50):14.4f} "
            f"{pct(f_tpot, 99):7.4f} | {pct(d_ttft, 50) - pct(f_ttft, 50):22.3f} {pct(d_ttft, 99) - pct(f_ttft, 99):7.3f}"
        )


if __name__ == "__main__":
    main()
