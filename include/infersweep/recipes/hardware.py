"""GPU facts per runner label, from vendor datasheets (dense, no sparsity).

Used by the memory preflight (memory) and the simulator's roofline (bandwidth, FLOP/s). A node in the
inventory may override `memory_gb`. Sources:
- H100 SXM5: NVIDIA H100 Tensor Core GPU datasheet — 80 GB HBM3, 3.35 TB/s, 989 TFLOPS BF16, 1,979 TFLOPS FP8, 700 W.
- H200 SXM: NVIDIA H200 datasheet — 141 GB HBM3e, 4.8 TB/s, same Hopper compute as H100, 700 W.
- B200 (HGX B200): NVIDIA HGX/DGX B200 datasheet — 180 GB HBM3e, 7.7 TB/s, 2.25 PFLOPS BF16, 4.5 PFLOPS FP8, 1,000 W.
- B300 (HGX B300): NVIDIA Blackwell Ultra datasheet — 288 GB HBM3e, 8 TB/s, 2.25 PFLOPS BF16, 4.5 PFLOPS FP8, 1,100 W.
- GB200 (per GPU in NVL72): 186 GB HBM3e, 8 TB/s, 2.5 PFLOPS BF16, 5 PFLOPS FP8, 1,200 W.
- MI300X: AMD Instinct MI300X datasheet — 192 GB HBM3, 5.3 TB/s, 1,307 TFLOPS BF16, 2,615 TFLOPS FP8, 750 W.
- MI325X: AMD Instinct MI325X datasheet — 256 GB HBM3E, 6 TB/s, 1,307 TFLOPS BF16, 2,615 TFLOPS FP8, 1,000 W.
- MI355X: AMD Instinct MI355X datasheet — 288 GB HBM3E, 8 TB/s, 2.5 PFLOPS BF16, 5 PFLOPS FP8, 1,400 W.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gb: float
    hbm_tb_s: float
    bf16_tflops: float
    fp8_tflops: float
    tdp_w: float

    @property
    def vendor(self) -> str:
        """`amd` (Instinct: ROCm devices, amd-smi) or `nvidia` (CUDA device requests, nvidia-smi)."""
        return "amd" if self.name.startswith("mi") else "nvidia"


GPU_SPECS: dict[str, GpuSpec] = {
    s.name: s
    for s in (
        GpuSpec("h100", 80.0, 3.35, 989.0, 1979.0, 700.0),
        GpuSpec("h200", 141.0, 4.8, 989.0, 1979.0, 700.0),
        GpuSpec("b200", 180.0, 7.7, 2250.0, 4500.0, 1000.0),
        GpuSpec("b300", 288.0, 8.0, 2250.0, 4500.0, 1100.0),
        GpuSpec("gb200", 186.0, 8.0, 2500.0, 5000.0, 1200.0),
        GpuSpec("gb300", 288.0, 8.0, 2500.0, 5000.0, 1400.0),
        GpuSpec("mi300x", 192.0, 5.3, 1307.0, 2615.0, 750.0),
        GpuSpec("mi325x", 256.0, 6.0, 1307.0, 2615.0, 1000.0),
        GpuSpec("mi355x", 288.0, 8.0, 2500.0, 5000.0, 1400.0),
    )
}

_LABEL_RE = re.compile(r"(gb300|gb200|b300|b200|h200|h100|mi355x|mi325x|mi300x)")


def gpu_for_runner(runner: str) -> GpuSpec | None:
    """The GPU a runner label means: `h200`, `h100-multinode`, `cluster:b200-dgxc` → h200, h100, b200.

    Returns None for labels that name no known GPU (the caller reports "unknown", never guesses).
    """
    m = _LABEL_RE.search(runner.lower())
    return GPU_SPECS[m.group(1)] if m else None
