"""Row-for-row parity: our planner vs a direct transcription of InferenceX's generator on raw YAML dicts.

`_reference_rows` transcribes the single-node branch of `generate_full_sweep` and `mark_eval_entries` from
`utils/matrix_logic/generate_sweep_configs.py` (InferenceX, around PR #1731) onto `yaml.safe_load` data,
with no pydantic and no shared code, so a planner bug cannot hide behind a matching count.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from infersweep.config.sweep import load_sweep
from infersweep.plan.planner import PlanFilters, expand_jobs

SEQ = {"1k1k": (1024, 1024), "8k1k": (8192, 1024)}
NAMES = {v: k for k, v in SEQ.items()}


def _reference_rows(configs: dict[str, Any], a: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seq_filter = {SEQ[s] for s in a.get("seq_lens", ())}
    for key, val in configs.items():
        if a.get("model_prefix") and not any(key.startswith(p) for p in a["model_prefix"]):
            continue
        if a.get("precision") and val["precision"] not in a["precision"]:
            continue
        if val.get("multinode", False):
            continue
        for seq in val["scenarios"].get("fixed-seq-len", []):
            isl, osl = seq["isl"], seq["osl"]
            if seq_filter and (isl, osl) not in seq_filter:
                continue
            for bmk in seq["search-space"]:
                tp, ep, dp_attn = bmk["tp"], bmk.get("ep"), bmk.get("dp-attn")
                if a.get("max_tp") is not None and tp > a["max_tp"]:
                    continue
                if a.get("max_ep") is not None and ep is not None and ep > a["max_ep"]:
                    ep = a["max_ep"]
                start, end = bmk["conc-start"], bmk["conc-end"]
                if a.get("min_conc") is not None:
                    if end < a["min_conc"]:
                        continue
                    start = max(start, a["min_conc"])
                if a.get("max_conc") is not None:
                    if start > a["max_conc"]:
                        start = end = a["max_conc"]
                    else:
                        end = min(end, a["max_conc"])
                conc = start
                while conc <= end:
                    rows.append({
                        "image": val["image"], "model": val["model"], "model-prefix": val["model-prefix"],
                        "precision": val["precision"], "framework": val["framework"], "runner": val["runner"],
                        "isl": isl, "osl": osl, "tp": tp, "ep": ep if ep is not None else 1,
                        "dp-attn": dp_attn if dp_attn is not None else False,
                        # Since 843c6254f every single-node row carries its pp/dcp/pcp (defaults 1).
                        "pp": bmk.get("pp", 1), "dcp-size": bmk.get("dcp-size", 1), "pcp-size": bmk.get("pcp-size", 1),
                        "spec-decoding": bmk.get("spec-decoding", "none"), "conc": conc,
                        "max-model-len": isl + osl + 256,
                        "exp-name": f"{val['model-prefix']}_{NAMES.get((isl, osl), f'{isl}_{osl}')}",
                        "disagg": val.get("disagg", False), "run-eval": False,
                    })
                    if conc == end:
                        break
                    conc *= 2
                    if conc > end:
                        conc = end
    groups: dict[tuple[Any, ...], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if (r["isl"], r["osl"]) != (8192, 1024) or r["conc"] < 16:
            continue
        groups[(r["model"], r["runner"], r["framework"], r["precision"], r["isl"], r["osl"], r["spec-decoding"],
                r["dp-attn"])].append(i)
    for idx in groups.values():
        concs = sorted({rows[i]["conc"] for i in idx})
        for i in idx:
            rows[i]["run-eval"] = rows[i]["conc"] in {concs[-1], concs[len(concs) // 2]}
    return rows


@pytest.fixture(scope="module")
def raw_and_sweep(inferencex_dir: Path) -> tuple[dict[str, Any], Any]:
    raw: dict[str, Any] = {}
    for name in ("nvidia-master.yaml", "amd-master.yaml"):
        raw.update(yaml.load((inferencex_dir / name).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    sweep = load_sweep([inferencex_dir / "nvidia-master.yaml", inferencex_dir / "amd-master.yaml"])
    return raw, sweep


@pytest.mark.parametrize("args", [
    {},
    {"max_conc": 64, "min_conc": 8},
    {"max_conc": 2},
    {"max_tp": 4, "max_ep": 2, "seq_lens": ("8k1k",)},
    {"model_prefix": ("dsr1", "minimaxm3"), "precision": ("fp8",)},
], ids=["full", "conc-window", "max-conc-below-all", "tp-ep-8k1k", "prefix-precision"])
def test_rows_match_reference(raw_and_sweep: tuple[dict[str, Any], Any], args: dict[str, Any]) -> None:
    """Same rows, same order, same run-eval, for the full sweep and for each filter family."""
    raw, sweep = raw_and_sweep
    want = _reference_rows(raw, args)
    got = [j.to_inferencex() for j in expand_jobs(sweep, PlanFilters(single_node=True, **args))]
    assert len(got) == len(want)
    assert got == want
