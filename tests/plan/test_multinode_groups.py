"""Multinode serve groups: every fixed-seq-len multinode row of today's fleet knows its pools, GPUs and nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from infersweep.config.sweep import Sweep, load_sweep
from infersweep.plan.groups import gpus_per_node, multinode_groups, pools_of
from infersweep.plan.models import MultinodeJob
from infersweep.plan.planner import PlanFilters, expand


@pytest.fixture(scope="module")
def sweep(inferencex_today_dir: Path) -> Sweep:
    return load_sweep(sorted(str(p) for p in inferencex_today_dir.glob("*-master.yaml")))


@pytest.fixture(scope="module")
def rows(sweep: Sweep) -> list[MultinodeJob]:
    return [r for r in expand(sweep, PlanFilters(multi_node=True)).multinode if r.scenario_type is None]


def test_every_row_becomes_a_group_with_inferencex_gpu_counts(rows: list[MultinodeJob]) -> None:
    groups = {g.id: g for g in multinode_groups(rows)}
    assert len(rows) == 384
    by_row = {}
    for row in rows:
        pools = pools_of(row)
        # InferenceX's process_result: PREFILL_GPUS + DECODE_GPUS, each num-worker x tp x pp x pcp
        expected = sum(w.num_worker * w.tp * w.pp * w.pcp_size for w in (row.prefill, row.decode))
        assert sum(p.gpus for p in pools) == expected
        by_row[id(row)] = pools
    for g in groups.values():
        assert g.multinode and g.gpus == sum(p.gpus for p in g.pools)
        assert g.nodes == sum(p.nodes for p in g.pools) >= 1
        assert g.concs == tuple(sorted(g.concs)) and set(g.eval_concs) <= set(g.concs)
        main = g.pools[-1]
        assert (g.tp, g.ep, g.dp_attn) == (main.tp, main.ep, main.dp_attn)


def test_rows_that_differ_only_in_concurrency_share_one_group(rows: list[MultinodeJob]) -> None:
    groups = multinode_groups(rows)
    assert len(groups) == len({g.id for g in groups}) < len(rows)
    # upstream splits dsr1-fp4-mi355x-sglang-disagg 1P-TP8+2D-TP8 8k1k over two allocations; we boot once
    merged = [g for g in groups if g.config_key == "dsr1-fp4-mi355x-sglang-disagg" and g.layout == "1P-TP8+2D-TP8"
              and g.seq_len == "8k1k"]
    assert len(merged) == 1 and merged[0].concs == (2, 4, 8, 16, 32, 64, 128, 256)
    # the union of concurrencies is exactly the rows'
    assert sum(len(g.concs) for g in groups) == len({(g.id, c) for g in groups for c in g.concs})


def test_ids_are_stable_and_do_not_depend_on_row_order(rows: list[MultinodeJob]) -> None:
    forward = {g.id for g in multinode_groups(rows)}
    assert forward == {g.id for g in multinode_groups(list(reversed(rows)))}


def test_disagg_pools_have_roles_and_hardware_per_pool(rows: list[MultinodeJob], sweep: Sweep) -> None:
    groups = multinode_groups(rows, sweep.runners)
    disagg = [g for g in groups if len(g.pools) == 2]
    assert disagg and all([p.role for p in g.pools] == ["prefill", "decode"] for g in disagg)
    # a row with an empty decode pool (num-worker 0) runs aggregated workers over nodes
    assert all([p.role for p in g.pools] == ["aggregated"] for g in groups if len(g.pools) == 1)
    assert all(g.layout.startswith(f"{g.pools[0].num_worker}P-") for g in disagg)
    for g in groups:
        for p in g.pools:
            assert p.gpus_per_node == gpus_per_node(p.runner, sweep.runners)


def test_gpus_per_node_reads_the_runner_label(sweep: Sweep) -> None:
    assert gpus_per_node("gb200") == 4 and gpus_per_node("cluster:gb300-nv") == 4
    assert gpus_per_node("b200-multinode") == 8 and gpus_per_node("mi355x-disagg") == 8
    assert gpus_per_node("gb200", sweep.runners) == 4  # from runners.yaml's cluster:gb200-nv hardware


def test_a_group_gives_its_row_back(rows: list[MultinodeJob]) -> None:
    from infersweep.plan.groups import multinode_job

    for g in multinode_groups(rows):
        assert pools_of(multinode_job(g)) == g.pools
