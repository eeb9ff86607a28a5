"""A multinode group's pools land on its row and on every result row; reports label and count them."""

from __future__ import annotations

from infersweep.plan.models import WorkerPool
from infersweep.report.json_source import from_inferencex
from infersweep.report.store_source import load_runs

from .helpers import group, point, recipe


def _disagg():
    pools = (WorkerPool(role="prefill", num_worker=1, tp=8, runner="h200"),
             WorkerPool(role="decode", num_worker=2, tp=8, ep=8, dp_attn=True, runner="h200"))
    return group("mn1", tp=8).model_copy(update={"pools": pools, "disagg": True, "ep": 8, "dp_attn": True})


def test_pools_reach_result_rows_and_reports(make_store) -> None:
    g = _disagg()
    assert g.gpus == 24 and g.nodes == 3 and g.layout == "1P-TP8+2D-DEP8"
    store = make_store()
    store.start_run(trigger_kind="manual", config_key=g.config_key, image_tag=g.image, engine="sim")
    store.record_group(g, recipe=recipe(), status="planned")
    # gpus left out: the row's GPU count comes from the group's pools, as InferenceX's PREFILL+DECODE GPUs
    store.record_benchmark(group_id=g.id, isl=g.isl, osl=g.osl, conc=8, result=point(8))
    assert store.flush().complete
    [p] = load_runs(store.engine, [f"{store.dag_id}/{store.run_id}"])
    assert p.gpus == 24
    assert p.pools is not None and [x["role"] for x in p.pools] == ["prefill", "decode"]
    assert p.topology == "1p-tp8+2d-tp8-ep8-dpa"
    # a disaggregated point is its own configuration, never paired with the aggregated tp8 one
    assert p.config_identity != p.model_copy(update={"pools": None}).config_identity


def test_inferencex_multinode_records_keep_their_pools() -> None:
    rec = {"hw": "gb200", "conc": 64, "image": "i", "model": "m", "infmax_model_prefix": "dsr1",
           "framework": "dynamo-sglang", "precision": "fp8", "isl": 8192, "osl": 1024, "tput_per_gpu": 900.0,
           "is_multinode": True, "prefill_num_workers": 2, "prefill_tp": 4, "prefill_ep": 4,
           "prefill_dp_attention": True, "decode_num_workers": 1, "decode_tp": 8, "decode_ep": 1,
           "decode_dp_attention": False, "num_prefill_gpu": 8, "num_decode_gpu": 8}
    p = from_inferencex(rec, run_id="r")
    assert p.gpus == 16 and p.topology == "2p-tp4-ep4-dpa+1d-tp8"
