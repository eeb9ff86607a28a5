"""Draw one adaptive sweep against the full ladder as an SVG (docs/img/adaptive-sweep.svg).

Replays the adaptive policy on one recorded scope (default: MiniMax-M3 on H200, 1k1k, simulated with 3 %
run noise, roofline prior) and draws every ladder point, the points the policy measured (numbered in the
order it measured them), the full ladder's frontier and the adaptive one.

Usage:
    .venv/bin/python perf/adaptive_picture.py [--scope minimax:minimaxm3-fp8-h200-vllm:1k1k] [--out docs/img/adaptive-sweep.svg]
"""

from __future__ import annotations

import argparse
import logging
import sys
from html import escape
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from adaptive_replay import sim_scopes

from infersweep.plan.adaptive import AdaptiveOptions, Frontier, FrontierPoint, replay

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 900, 560, 80, 200, 50, 60
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scope", default="minimax:minimaxm3-fp8-h200-vllm:1k1k")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "img" / "adaptive-sweep.svg")
    ap.add_argument("--tolerance", type=float, default=AdaptiveOptions().tolerance)
    ap.add_argument("--noise", type=float, default=AdaptiveOptions().noise)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    scopes = sim_scopes(fleet_sample=0, run_sigma=0.03, step_sigma=0.02, prompts_per_conc=4, seed=0)
    data, priors = scopes[args.scope]
    result = replay(data, options=AdaptiveOptions(tolerance=args.tolerance, noise=args.noise), priors=priors)
    order = {(d.group_id, d.conc): i for i, d in enumerate((d for d in result.decisions if d.action == "measure"), 1)}
    points = [(gid, label, c, o) for gid, (label, ladder) in data.items() for c, o in ladder.items() if o.ok]
    xs = [o.x for *_, o in points]
    ys = [o.y for *_, o in points]
    x0, x1, y1 = 0.0, max(xs) * 1.08, max(ys) * 1.1

    def px(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * (W - PAD_L - PAD_R)

    def py(y: float) -> float:
        return H - PAD_B - y / y1 * (H - PAD_T - PAD_B)

    full = Frontier.of(FrontierPoint(o.x, o.y, label, c) for _g, label, c, o in points)
    adaptive = Frontier.of(FrontierPoint(o.x, o.y, label, c) for g, label, c, o in points if (g, c) in order)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{PAD_L}" y="24" font-size="15">{escape(args.scope.split(":", 1)[1])}: adaptive sweep '
           f'({result.measured} of {result.total} points, frontier error {result.gap * 100:.2f}%) vs the full ladder</text>']
    for i in range(6):  # grid and tick labels
        yv, xv = y1 * i / 5, x0 + (x1 - x0) * i / 5
        out.append(f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{py(yv):.1f}" y2="{py(yv):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{PAD_L - 8}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:,.0f}</text>')
        out.append(f'<text x="{px(xv):.1f}" y="{H - PAD_B + 18}" text-anchor="middle">{xv:,.0f}</text>')
    out.append(f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 16}" text-anchor="middle">interactivity (tok/s/user)</text>')
    out.append(f'<text x="20" y="{(H - PAD_B + PAD_T) / 2}" transform="rotate(-90 20 {(H - PAD_B + PAD_T) / 2})" '
               'text-anchor="middle">throughput per GPU (tok/s)</text>')
    for front, style in ((full, 'stroke="#999" stroke-width="6" opacity="0.45"'),
                         (adaptive, 'stroke="black" stroke-width="1.5" stroke-dasharray="5 3"')):
        pts = " ".join(f"{px(p.x):.1f},{py(p.y):.1f}" for p in front.vertices)
        out.append(f'<polyline points="{pts}" fill="none" {style}/>')
    labels = sorted({label for _g, label, _c, _o in points})
    color = {label: COLORS[i % len(COLORS)] for i, label in enumerate(labels)}
    for g, label, c, o in points:
        cx, cy = px(o.x), py(o.y)
        if (g, c) in order:
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="{color[label]}"/>')
            out.append(f'<text x="{cx + 8:.1f}" y="{cy - 6:.1f}" font-size="10">{order[(g, c)]}</text>')
        else:
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="6" fill="none" stroke="{color[label]}" '
                       'stroke-width="1.5"/>')
        out.append(f'<text x="{cx:.1f}" y="{cy + 16:.1f}" font-size="9" fill="#666" text-anchor="middle">c{c}</text>')
    lx = W - PAD_R + 20
    legend = [(f'<circle cx="{lx}" cy="{{y}}" r="6" fill="{color[label]}"/>', label) for label in labels]
    legend += [(f'<circle cx="{lx}" cy="{{y}}" r="6" fill="none" stroke="#333"/>', "skipped (not measured)"),
               (f'<line x1="{lx - 8}" x2="{lx + 8}" y1="{{y}}" y2="{{y}}" stroke="#999" stroke-width="6" opacity="0.45"/>',
                "full ladder frontier"),
               (f'<line x1="{lx - 8}" x2="{lx + 8}" y1="{{y}}" y2="{{y}}" stroke="black" stroke-dasharray="5 3"/>',
                "adaptive frontier")]
    for i, (mark, text) in enumerate(legend):
        y = PAD_T + 20 + 22 * i
        out.append(mark.format(y=y))
        out.append(f'<text x="{lx + 14}" y="{y + 4}">{escape(text)}</text>')
    out.append(f'<text x="{lx - 8}" y="{PAD_T + 20 + 22 * len(legend) + 10}" font-size="10" fill="#444">numbers: measuring '
               'order</text>')
    out.append("</svg>")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}: {result.measured}/{result.total} points, frontier error {result.gap * 100:.2f}%")


if __name__ == "__main__":
    main()
