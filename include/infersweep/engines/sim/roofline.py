"""Roofline step-time model: time of one engine step = max(memory time, compute time) + overheads.

All quantities are per GPU of the most loaded data-parallel rank; DP ranks step in lock-step, as vLLM's
DP+EP engines do (idle ranks run dummy batches), so the step takes as long as its busiest rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from infersweep.engines.sim.profiles import BYTES_PER_PARAM, ModelProfile, Precision
from infersweep.recipes.hardware import GpuSpec

GIB = 1024**3


@dataclass(frozen=True)
class Topology:
    """Parallelism: TP GPUs per replica, DP replicas, experts spread over `ep` GPUs (1 = TP-sharded), `pp`
    pipeline stages, decode-context parallelism `dcp` (reuses the TP ranks) and prefill-context parallelism
    `pcp` (adds GPUs), as vLLM's `--pipeline-parallel-size`, `--decode-context-parallel-size` and
    `--prefill-context-parallel-size`."""

    tp: int = 1
    ep: int = 1
    dp: int = 1
    pp: int = 1
    dcp: int = 1
    pcp: int = 1

    def __post_init__(self) -> None:
        if min(self.tp, self.dp, self.ep, self.pp, self.dcp, self.pcp) < 1:
            raise ValueError("tp, ep, dp, pp, dcp and pcp must be >= 1")
        if self.ep not in (1, self.tp * self.dp):
            # vLLM's --enable-expert-parallel makes the EP group span every GPU (EP = TP x DP).
            raise ValueError(f"ep must be 1 or tp*dp = {self.tp * self.dp} (vLLM's expert-parallel group)")
        if self.pcp == 1 and self.tp % self.dcp:
            # vLLM (config/parallel.py): without PCP, DCP splits the TP ranks.
            raise ValueError(f"decode-context-parallel-size {self.dcp} must divide tensor-parallel-size {self.tp}")

    @property
    def gpus(self) -> int:
        return self.tp * self.dp * self.pp * self.pcp


@dataclass(frozen=True)
class Efficiency:
    """Achievable fractions of datasheet peaks, and fixed costs. Defaults are typical of vLLM on Hopper."""

    hbm: float = 0.85  # streaming reads reach ~85 % of datasheet bandwidth
    mfu: float = 0.60  # large GEMMs reach ~60 % of dense peak
    step_overhead_s: float = 0.0010  # scheduler, sampling, launch gaps per step (CUDA graphs on)
    collective_latency_s: float = 5e-6  # one small all-reduce / all-to-all on NVLink
    activation_reserve_gib: float = 2.5  # activations, CUDA graphs, NCCL buffers: vLLM's profile run


@dataclass(frozen=True)
class StepCost:
    """The modelled time of one step and its parts (seconds)."""

    total_s: float
    memory_s: float
    compute_s: float
    overhead_s: float

    @property
    def compute_fraction(self) -> float:
        """How compute-bound the step was: compute time over the roofline time (0..1)."""
        roof = max(self.memory_s, self.compute_s)
        return self.compute_s / roof if roof > 0 else 0.0


class Roofline:
    """Step times and memory plan for one (model, GPU, topology, precision)."""

    def __init__(
        self,
        model: ModelProfile,
        gpu: GpuSpec,
        topology: Topology,
        *,
        precision: Precision | None = None,
        kv_dtype_bytes: float = 2.0,
        efficiency: Efficiency | None = None,
    ) -> None:
        self.model = model
        self.gpu = gpu
        self.topo = topology
        self.precision: Precision = precision or model.precision
        self.kv_dtype_bytes = kv_dtype_bytes
        self.eff = efficiency or Efficiency()
        self.bytes_per_param = BYTES_PER_PARAM[self.precision]
        # FP4 compute falls back to the FP8 rate: GPU_SPECS lists no FP4 figure (conservative for Blackwell).
        tflops = gpu.bf16_tflops if self.precision in ("bf16", "fp16") else gpu.fp8_tflops
        self.flops_per_s = tflops * 1e12 * self.eff.mfu
        self.bytes_per_s = gpu.hbm_tb_s * 1e12 * self.eff.hbm
        tp, pp = topology.tp, topology.pp
        self._expert_shards = topology.ep if topology.ep > 1 else tp
        # Each pipeline stage holds 1/pp of the layers: weights and KV per GPU shrink by pp.
        self._dense_weight_bytes = model.dense_params * self.bytes_per_param / tp / pp
        self._expert_weight_bytes = model.expert_params * self.bytes_per_param / self._expert_shards / pp
        # KV: TP shards heads (replicated once TP exceeds them); DCP shards the replicated part along the
        # sequence, never more ways than TP (the recipes' memory preflight uses the same rule); PCP shards
        # the sequence over its extra ranks.
        per_tp = model.kv_bytes_per_token_per_gpu(tp, kv_dtype_bytes)
        head_shards = model.kv_bytes_per_token(kv_dtype_bytes) / per_tp
        dcp_gain = min(tp, head_shards * topology.dcp) / head_shards
        self.kv_bytes_per_token_gpu = per_tp / dcp_gain / pp / topology.pcp
        self._attn_dim_gpu = model.num_attention_heads * model.head_dim / min(tp, model.num_attention_heads)
        # Collectives: two TP all-reduces per layer, two EP all-to-alls per MoE layer, one KV all-gather per
        # layer for DCP and for PCP, and a stage-to-stage send per micro-batch boundary for PP.
        n_coll = (2 * model.layers if tp > 1 else 0) + (2 * model.moe_layers if topology.ep > 1 else 0)
        n_coll += (model.layers if topology.dcp > 1 else 0) + (model.layers if topology.pcp > 1 else 0)
        n_coll += pp * (pp - 1)
        self._overhead_s = self.eff.step_overhead_s + n_coll * self.eff.collective_latency_s

    # --- memory plan -------------------------------------------------------------------------------
    @property
    def weight_bytes_per_gpu(self) -> float:
        return self._dense_weight_bytes + self._expert_weight_bytes

    def kv_cache_bytes_per_gpu(self, gpu_memory_utilization: float) -> float:
        """KV-cache bytes one GPU can hold: budget − weights − activation reserve (may be ≤ 0)."""
        budget = self.gpu.memory_gb * 1e9 * gpu_memory_utilization
        return budget - self.weight_bytes_per_gpu - self.eff.activation_reserve_gib * GIB

    def num_kv_blocks(self, gpu_memory_utilization: float, block_size: int) -> int:
        """KV blocks of one DP rank (each rank has its own cache)."""
        free = self.kv_cache_bytes_per_gpu(gpu_memory_utilization)
        if free <= 0:
            return 0
        return int(free // (self.kv_bytes_per_token_gpu * block_size))

    # --- step time ---------------------------------------------------------------------------------
    def step_cost(self, num_tokens: int, context_tokens: int, attn_pairs: float) -> StepCost:
        """Time of one step over the whole engine (all DP ranks).

        num_tokens: tokens computed this step (prefill chunks + one per decoding sequence).
        context_tokens: KV tokens read by attention (each scheduled sequence's context incl. new tokens).
        attn_pairs: Σ new_tokens × average attended length (query-key pairs), for attention FLOPs.
        """
        dp = self.topo.dp
        tokens_rank = num_tokens / dp
        # Expert weights touched: with T tokens routed top-k over E experts, an expert is hit with
        # probability 1 − (1 − k/E)^T. With EP, tokens from every DP rank reach the same experts.
        if self.model.is_moe and num_tokens > 0:
            t = num_tokens if self.topo.ep > 1 else tokens_rank
            hit = 1.0 - (1.0 - self.model.experts_per_token / self.model.num_experts) ** t
            expert_bytes = self._expert_weight_bytes * hit
        else:
            expert_bytes = 0.0
        kv_bytes = context_tokens / dp * self.kv_bytes_per_token_gpu
        # PP: the batch runs as pp micro-batches through pp stages; a stage reads its weights once per
        # micro-batch, so the batch re-reads weights pp times (decode latency gains nothing) while KV reads
        # and FLOPs split over the stages. PCP splits the step's tokens over its ranks.
        pp, pcp = self.topo.pp, self.topo.pcp
        memory_s = (pp * (self._dense_weight_bytes + expert_bytes) + kv_bytes) / self.bytes_per_s
        linear_flops = 2.0 * self.model.active_params * tokens_rank / self.topo.tp / pp / pcp
        attn_flops = 4.0 * self.model.layers * self._attn_dim_gpu * attn_pairs / dp / pp / pcp
        compute_s = (linear_flops + attn_flops) / self.flops_per_s
        total = max(memory_s, compute_s) + self._overhead_s
        return StepCost(total_s=total, memory_s=memory_s, compute_s=compute_s, overhead_s=self._overhead_s)
