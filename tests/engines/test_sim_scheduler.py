"""Scheduler and roofline shapes: pure, deterministic, simulated time only."""

from __future__ import annotations

import itertools

import pytest

from infersweep.engines.sim.offline import closed_loop
from infersweep.engines.sim.profiles import get_gpu_profile, get_model_profile
from infersweep.engines.sim.roofline import Roofline, Topology
from infersweep.engines.sim.scheduler import Scheduler, SchedulerConfig, SimRequest, Status


def _roofline(model: str = "llama-3.1-8b", gpu: str = "h100", **topo: int) -> Roofline:
    return Roofline(get_model_profile(model), get_gpu_profile(gpu), Topology(**topo))


def _cfg(num_blocks: int = 25_000, **kw: int) -> SchedulerConfig:
    return SchedulerConfig(max_num_seqs=kw.pop("max_num_seqs", 256),
                           max_num_batched_tokens=kw.pop("max_num_batched_tokens", 8192), num_blocks=num_blocks, **kw)


def test_decode_step_time_grows_with_batch_and_context() -> None:
    rf = _roofline()
    costs = [rf.step_cost(n, n * 1000, n * 1000).total_s for n in (1, 8, 64, 256, 1024)]
    assert costs == sorted(costs) and costs[-1] > 3 * costs[0]
    # Batch 1 decode is weight-bandwidth bound: 16 GB at 85 % of 3.35 TB/s plus 1 ms overhead.
    one = rf.step_cost(1, 1, 0.5)
    assert one.memory_s > one.compute_s
    assert one.total_s == pytest.approx(8.03e9 * 2 / (3.35e12 * 0.85) + 0.001, rel=0.01)
    # A long prefill chunk is compute bound.
    assert rf.step_cost(8192, 8192, 8192 * 4096).compute_fraction == 1.0


def test_moe_reads_more_experts_as_the_batch_grows() -> None:
    rf = _roofline("minimax-m3", "h200", tp=8)
    small, big = rf.step_cost(1, 1, 1), rf.step_cost(512, 512, 512)
    assert big.memory_s > 5 * small.memory_s  # 4 of 128 experts per token vs nearly all of them
    assert rf.model.expert_params + rf.model.dense_params == pytest.approx(rf.model.total_params)


def test_tpot_grows_with_concurrency_and_throughput_saturates() -> None:
    rf = _roofline()
    points = [closed_loop(rf, _cfg(), concurrency=c, isl=512, osl=128, num_requests=2 * c)
              for c in (1, 4, 16, 64, 256)]
    tpots = [p.mean_tpot_s for p in points]
    tput = [p.output_throughput for p in points]
    assert tpots == sorted(tpots) and tpots[-1] > 3 * tpots[0]
    assert tput == sorted(tput) and tput[-1] > 20 * tput[0]
    # A Pareto frontier: every point trades interactivity for throughput; none dominates another.
    for a, b in itertools.pairwise(points):
        assert b.output_throughput > a.output_throughput and b.interactivity < a.interactivity
    assert all(p.num_preemptions == 0 and p.completed == 2 * p.concurrency for p in points)


def test_ttft_explodes_past_kv_capacity() -> None:
    rf = _roofline()
    blocks = 2000  # 32k tokens of KV: holds ~24 sequences of 1,280 tokens
    fits = closed_loop(rf, _cfg(blocks), concurrency=16, isl=1024, osl=256, num_requests=32)
    over = closed_loop(rf, _cfg(blocks), concurrency=128, isl=1024, osl=256, num_requests=256)
    assert fits.num_preemptions == 0
    assert over.num_preemptions > 0
    assert over.mean_ttft_s > 10 * fits.mean_ttft_s
    # Past capacity, more clients add queueing, not throughput.
    assert over.output_throughput < 1.5 * closed_loop(
        rf, _cfg(blocks), concurrency=24, isl=1024, osl=256, num_requests=48).output_throughput


def test_preemption_recomputes_and_every_request_completes_exactly() -> None:
    sched = Scheduler(_cfg(num_blocks=64, block_size=16, max_num_batched_tokens=2048), _roofline())
    reqs = [SimRequest(rid=i, prompt_len=300, max_tokens=200, arrival=0.0) for i in range(6)]
    for r in reqs:
        sched.add(r)
    preempted = 0
    while sched.has_work:
        out = sched.step()
        assert out is not None
        assert out.num_scheduled_tokens <= 2048
        preempted += len(out.preempted)
        assert sched.free_blocks >= 0
    assert preempted > 0 and sched.num_preemptions == preempted
    assert all(r.status is Status.FINISHED and r.num_output == 200 and r.finish_reason == "length" for r in reqs)
    assert sched.free_blocks == 64  # every block returned
    assert sched.generation_tokens_total == 6 * 200
    assert sched.prompt_tokens_total == 6 * 300  # recompute is not double-counted


def test_chunked_prefill_respects_the_token_budget() -> None:
    sched = Scheduler(_cfg(max_num_batched_tokens=512), _roofline())
    req = SimRequest(rid=0, prompt_len=2000, max_tokens=3, arrival=0.0)
    sched.add(req)
    chunks = []
    while req.first_token_time is None:
        out = sched.step()
        assert out is not None
        chunks.append(out.num_scheduled_tokens)
    assert chunks == [512, 512, 512, 464]
    while sched.has_work:
        sched.step()
    assert req.num_output == 3


def test_stop_after_finishes_with_stop_and_abort_frees_blocks() -> None:
    sched = Scheduler(_cfg(num_blocks=100), _roofline())
    a = SimRequest(rid=0, prompt_len=10, max_tokens=50, arrival=0.0, stop_after=5)
    b = SimRequest(rid=1, prompt_len=10, max_tokens=50, arrival=0.0)
    sched.add(a)
    sched.add(b)
    sched.step()
    sched.abort(b)
    while sched.has_work:
        sched.step()
    assert (a.finish_reason, a.num_output) == ("stop", 5)
    assert b.finish_reason == "abort" and sched.free_blocks == 100


def test_the_scheduler_is_deterministic() -> None:
    rf = _roofline("deepseek-r1", "b200", tp=8, ep=8)
    runs = [closed_loop(rf, _cfg(), concurrency=32, isl=300, osl=40, num_requests=64) for _ in range(2)]
    assert runs[0] == runs[1]


def test_requests_larger_than_the_cache_are_refused() -> None:
    sched = Scheduler(_cfg(num_blocks=4, block_size=16), _roofline())
    with pytest.raises(ValueError, match="KV cache"):
        sched.add(SimRequest(rid=0, prompt_len=60, max_tokens=10, arrival=0.0))


def test_topology_validation_and_kv_sharding() -> None:
    with pytest.raises(ValueError, match="ep must be"):
        Topology(tp=4, ep=2)
    m = get_model_profile("llama-3.1-70b")
    assert m.kv_bytes_per_token(2.0) == 2 * 80 * 8 * 128 * 2
    assert m.kv_bytes_per_token_per_gpu(4, 2.0) == m.kv_bytes_per_token(2.0) / 4
    assert m.kv_bytes_per_token_per_gpu(16, 2.0) == m.kv_bytes_per_token(2.0) / 8  # replicated past 8 heads
    ds = get_model_profile("deepseek-r1")
    assert ds.kv_bytes_per_token_per_gpu(8, 2.0) == 61 * 576 * 2  # MLA latent is not sharded
    # Memory plan: 70B in bf16 does not fit one H100; KV blocks come out non-positive.
    assert _roofline("llama-3.1-70b", "h100").num_kv_blocks(0.9, 16) == 0
    assert _roofline("llama-3.1-70b", "h100", tp=4).num_kv_blocks(0.9, 16) > 0


def test_pipeline_parallel_splits_layers_not_decode_latency() -> None:
    """PP2 holds half the layers per GPU (twice the KV room), halves prefill time, and gains nothing on
    batch-1 decode: each token still streams every weight once, stage after stage."""
    tp2, pp2 = _roofline(tp=2), _roofline(tp=2, pp=2)
    assert pp2.topo.gpus == 4 and pp2.weight_bytes_per_gpu == pytest.approx(tp2.weight_bytes_per_gpu / 2)
    assert pp2.num_kv_blocks(0.9, 16) > 2 * tp2.num_kv_blocks(0.9, 16)
    one_tp, one_pp = tp2.step_cost(1, 2000, 2000), pp2.step_cost(1, 2000, 2000)
    assert one_pp.memory_s == pytest.approx(one_tp.memory_s, rel=0.02)
    prefill_tp, prefill_pp = tp2.step_cost(8192, 8192, 8192 * 4096), pp2.step_cost(8192, 8192, 8192 * 4096)
    assert prefill_pp.compute_s == pytest.approx(prefill_tp.compute_s / 2)


def test_context_parallelism() -> None:
    """DCP shards only KV that TP replicates (MLA's latent; GQA once tp exceeds the KV heads); PCP adds GPUs,
    shards the sequence and splits prefill compute."""
    mla, mla_dcp = _roofline("deepseek-r1", "h200", tp=8), _roofline("deepseek-r1", "h200", tp=8, dcp=8)
    assert mla_dcp.kv_bytes_per_token_gpu == pytest.approx(mla.kv_bytes_per_token_gpu / 8)
    assert mla_dcp.topo.gpus == 8
    gqa, gqa_dcp = _roofline(tp=2), _roofline(tp=2, dcp=2)  # 8 KV heads over 2 ranks: nothing replicated
    assert gqa_dcp.kv_bytes_per_token_gpu == pytest.approx(gqa.kv_bytes_per_token_gpu)
    pcp = _roofline(tp=2, pcp=2)
    assert pcp.topo.gpus == 4 and pcp.kv_bytes_per_token_gpu == pytest.approx(gqa.kv_bytes_per_token_gpu / 2)
    assert pcp.step_cost(8192, 8192, 8192 * 4096).compute_s == pytest.approx(
        gqa.step_cost(8192, 8192, 8192 * 4096).compute_s / 2)
    with pytest.raises(ValueError, match="must divide tensor-parallel-size"):
        Topology(tp=4, dcp=3)
