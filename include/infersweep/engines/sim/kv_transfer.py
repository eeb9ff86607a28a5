"""KV-cache transfer between a prefill worker and a decode worker (disaggregated serving).

When a prefill worker has computed a prompt, every one of its GPUs sends the KV it holds for that prompt to
the decode worker: GQA models shard KV heads over TP (each rank sends its share), MLA models replicate the
latent on every rank (each rank sends a full copy to its decode peer, as SGLang's and TRT-LLM's
transceivers pair ranks), pipeline stages send their own layers. So the bytes one rank sends are the KV
bytes per token that rank holds (`Roofline.kv_bytes_per_token_gpu`) times the prompt length, and the ranks
send in parallel over their own NICs.

    transfer time = fixed latency of the transfer engine
                    + bytes per rank / (link bandwidth per GPU x the engine's achievable fraction)

A prefill worker's NICs carry one prompt's KV after another: a transfer starts when the prompt is done and
the previous transfer has left the link (`KvLink`), so bursts of long prompts queue.

Prefill and decode pools never share a node (`recipes.topology.place_pools`), so KV crosses the scale-out
network, or the rack's NVLink on GB200/GB300 NVL72, where every GPU of the rack is on one NVLink domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

#: Link bandwidth per GPU, one direction, GB/s (1e9 bytes/s). Ballpark datasheet figures:
#: - infiniband: ConnectX-7 NDR 400 Gb/s, one NIC per GPU (NVIDIA DGX H100/H200/B200 user guides) = 50 GB/s.
#: - infiniband-xdr: ConnectX-8 SuperNIC 800 Gb/s per GPU (NVIDIA DGX B300 / GB300 datasheets) = 100 GB/s.
#: - roce: 400 GbE RoCE v2 per GPU (AMD Pensando Pollara 400 / Broadcom Thor2 on MI300X-MI355X nodes) = 50 GB/s.
#: - nvlink: NVLink 5 in a GB200/GB300 NVL72 rack, 1.8 TB/s bidirectional per GPU = 900 GB/s per direction.
#: - ethernet: 100 GbE without RDMA (a TCP fallback) = 12.5 GB/s.
LINK_GB_S: dict[str, float] = {
    "infiniband": 50.0,
    "infiniband-xdr": 100.0,
    "roce": 50.0,
    "nvlink": 900.0,
    "ethernet": 12.5,
}

#: The link a GPU profile's disaggregated pools use by default (pools sit on different nodes).
DEFAULT_LINK: dict[str, str] = {
    "h100": "infiniband", "h200": "infiniband", "b200": "infiniband", "b300": "infiniband-xdr",
    "gb200": "nvlink", "gb300": "nvlink", "mi300x": "roce", "mi325x": "roce", "mi355x": "roce",
}


@dataclass(frozen=True)
class TransferEngine:
    """A KV transfer library: the fraction of line rate it reaches on large messages and its fixed cost per
    transfer (descriptor set-up, completion notification, the bootstrap/handshake round trip)."""

    efficiency: float
    latency_s: float
    moves_bytes: bool = True  # False: a test backend that sends nothing (SGLang's `fake`)


#: Assumptions, not measurements (stated so the figures can be traced):
#: - nixl (vLLM NixlConnector, SGLang/Dynamo `nixl`, TRT-LLM NIXL): UCX RDMA writes; large transfers assumed at
#:   80 % of line rate, 0.5 ms per transfer.
#: - ucx (TRT-LLM's UCX cache transceiver): the same UCX path as nixl.
#: - mooncake (SGLang's default): the Mooncake paper (FAST '25) reports 190 GB/s over 8x400 Gb/s NICs,
#:   about 48 % of line rate: 0.5 of line rate, 0.5 ms per transfer.
#: - nccl (vLLM P2pNcclConnector) and mpi (TRT-LLM MPI backend): 70 % / 50 % of line rate, 1 ms per transfer.
#: - fake (SGLang's test backend): moves nothing; the decode side gets no KV (a lower bound, not a real setup).
TRANSFER_ENGINES: dict[str, TransferEngine] = {
    "nixl": TransferEngine(efficiency=0.80, latency_s=0.0005),
    "ucx": TransferEngine(efficiency=0.80, latency_s=0.0005),
    "mooncake": TransferEngine(efficiency=0.50, latency_s=0.0005),
    "nccl": TransferEngine(efficiency=0.70, latency_s=0.001),
    "mpi": TransferEngine(efficiency=0.50, latency_s=0.001),
    "fake": TransferEngine(efficiency=1.0, latency_s=0.0, moves_bytes=False),
}
DEFAULT_TRANSFER_ENGINE = "nixl"


class _KvShape(Protocol):
    """What the transfer model needs from the roofline: KV bytes per token held by one GPU."""

    @property
    def kv_bytes_per_token_gpu(self) -> float: ...


def check_kv_transfer(engine: str, link: str | None) -> None:
    """Raise ValueError naming the known values when `engine` or `link` is unknown."""
    if engine not in TRANSFER_ENGINES:
        raise ValueError(f"unknown KV transfer engine {engine!r}; known: {', '.join(sorted(TRANSFER_ENGINES))}")
    if link is not None and link not in LINK_GB_S:
        raise ValueError(f"unknown KV link {link!r}; known: {', '.join(sorted(LINK_GB_S))}")


@dataclass(frozen=True)
class KvTransferModel:
    """Unloaded KV transfer time of one prefill worker: bytes per rank over the link, plus a fixed latency."""

    engine: str
    link: str
    kv_bytes_per_token_rank: float
    link_gb_s: float
    efficiency: float
    latency_s: float
    moves_bytes: bool = True

    @classmethod
    def build(cls, roofline: _KvShape, gpu_name: str, *, engine: str = DEFAULT_TRANSFER_ENGINE,
              link: str | None = None) -> KvTransferModel:
        """The model of a prefill worker with this roofline (its TP/PP/KV dtype) on `gpu_name` GPUs.

        `link` None picks the GPU's usual scale-out link (`DEFAULT_LINK`, InfiniBand when the GPU is not listed).
        """
        check_kv_transfer(engine, link)
        link = link or DEFAULT_LINK.get(gpu_name.lower(), "infiniband")
        spec = TRANSFER_ENGINES[engine]
        return cls(engine=engine, link=link, kv_bytes_per_token_rank=roofline.kv_bytes_per_token_gpu,
                   link_gb_s=LINK_GB_S[link], efficiency=spec.efficiency, latency_s=spec.latency_s,
                   moves_bytes=spec.moves_bytes)

    def bytes_per_rank(self, tokens: int) -> float:
        """Bytes one prefill GPU sends for a prompt of `tokens` tokens."""
        return tokens * self.kv_bytes_per_token_rank if self.moves_bytes else 0.0

    def wire_s(self, tokens: int) -> float:
        """Seconds the link is busy with this prompt's KV."""
        return self.bytes_per_rank(tokens) / (self.link_gb_s * 1e9 * self.efficiency)

    def duration_s(self, tokens: int) -> float:
        """Unloaded transfer time: latency + wire time."""
        return self.latency_s + self.wire_s(tokens)


class KvLink:
    """One prefill worker's outgoing link: transfers queue behind each other (their wire time, not latency)."""

    def __init__(self, model: KvTransferModel) -> None:
        self.model = model
        self.free_at = 0.0
        self.transfers = 0
        self.bytes_total = 0.0  # per rank
        self.seconds_total = 0.0  # Σ (arrival − ready): queueing + latency + wire

    def send(self, ready_at: float, tokens: int) -> float:
        """Send a prompt's KV whose prefill finished at `ready_at` (simulated s); returns when it has arrived."""
        start = max(ready_at, self.free_at)
        wire = self.model.wire_s(tokens)
        self.free_at = start + wire
        arrival = start + wire + self.model.latency_s
        self.transfers += 1
        self.bytes_total += self.model.bytes_per_rank(tokens)
        self.seconds_total += arrival - ready_at
        return arrival
