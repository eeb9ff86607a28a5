"""Worker pools: GPUs and nodes as InferenceX counts them, and where each worker rank is placed."""

from __future__ import annotations

import pytest

from infersweep.plan.models import WorkerPool
from infersweep.recipes.topology import node_demand, nodes_for_pools, place_pools, total_nodes


def test_pool_gpus_and_nodes() -> None:
    small = WorkerPool(role="prefill", num_worker=3, tp=4, runner="h100")
    wide = WorkerPool(role="decode", num_worker=2, tp=16, ep=16, dp_attn=True, runner="gb200", gpus_per_node=4)
    assert (small.gpus, small.workers_per_node, small.nodes) == (12, 2, 2)
    assert (wide.gpus, wide.nodes_per_worker, wide.nodes) == (32, 4, 8)
    assert wide.label == "2xDEP16" and small.label == "3xTP4"
    assert total_nodes([small, wide]) == 10
    assert node_demand([small, wide]) == {"h100": 2, "gb200": 8}


def test_placement_packs_small_workers_and_spreads_wide_ones() -> None:
    pools = [WorkerPool(role="prefill", num_worker=3, tp=4, runner="h100"),
             WorkerPool(role="decode", num_worker=1, tp=16, runner="h100")]
    placed = {p.name: (p.node_index, p.gpu_ids) for p in place_pools(pools)}
    assert placed == {"prefill-0": (0, (0, 1, 2, 3)), "prefill-1": (0, (4, 5, 6, 7)), "prefill-2": (1, (0, 1, 2, 3)),
                      "decode-0": (2, tuple(range(8))), "decode-0.1": (3, tuple(range(8)))}
    # GPU ids never overlap on a node
    seen: dict[int, set[int]] = {}
    for p in place_pools(pools):
        assert not seen.setdefault(p.node_index, set()) & set(p.gpu_ids)
        seen[p.node_index] |= set(p.gpu_ids)


def test_nodes_for_pools_maps_leases_per_label() -> None:
    pools = [WorkerPool(role="prefill", num_worker=1, tp=8, runner="b200"),
             WorkerPool(role="decode", num_worker=2, tp=8, runner="h100")]
    assert nodes_for_pools(pools, {"h100": ["h1", "h2"], "b200": ["b1"]}) == ["b1", "h1", "h2"]
    with pytest.raises(ValueError, match="needs 2 h100 node"):
        nodes_for_pools(pools, {"h100": ["h1"], "b200": ["b1"]})
