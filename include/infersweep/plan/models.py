"""Plan data: InferenceX-compatible jobs and the serve groups we build from them.

These models are the contract between the planner and everything downstream (recipes, engines,
the DAG factory, the store). Field names follow InferenceX's matrix row with `-` turned into `_`;
`to_inferencex()` gives the reference row back with its exact keys.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: Keys of one single-node row of InferenceX's `generate_sweep_configs.py full-sweep`, in order.
INFERENCEX_JOB_KEYS: tuple[str, ...] = (
    "image", "model", "model-prefix", "precision", "framework", "runner", "isl", "osl", "tp", "ep",
    "dp-attn", "spec-decoding", "conc", "max-model-len", "exp-name", "disagg", "run-eval",
)


def seq_len_name(isl: int, osl: int) -> str:
    """InferenceX's shape name: 1k1k, 8k1k, else `<isl>_<osl>`."""
    return {(1024, 1024): "1k1k", (8192, 1024): "8k1k"}.get((isl, osl), f"{isl}_{osl}")


class ServerSpec(BaseModel):
    """What one server is: the config key, image, model and topology. Shared by jobs and serve groups."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config_key: str
    image: str
    model: str
    model_prefix: str
    precision: str
    framework: str
    runner: str
    isl: int
    osl: int
    tp: int
    ep: int = 1
    dp_attn: bool = False
    pp: int = 1
    dcp_size: int = 1
    pcp_size: int = 1
    spec_decoding: str = "none"
    max_model_len: int
    exp_name: str
    disagg: bool = False


class Job(ServerSpec):
    """One benchmark point: one (config key, isl/osl, search-space point, conc)."""

    conc: int
    run_eval: bool = False

    def to_inferencex(self) -> dict[str, Any]:
        """The reference generator's row, with exactly `INFERENCEX_JOB_KEYS`."""
        d = self.model_dump()
        return {k: d[k.replace("-", "_")] for k in INFERENCEX_JOB_KEYS}


class ServeGroup(ServerSpec):
    """Jobs that differ only in `conc`: one server boot serves all of them.

    `id` is a short, stable fingerprint of the canonical recipe inputs (everything but conc), so the
    same topology gets the same id across runs, machines and config-file reorderings.
    """

    id: str
    concs: tuple[int, ...] = Field(description="ascending")
    eval_concs: tuple[int, ...] = ()

    @property
    def gpus(self) -> int:
        """GPUs one server of this group occupies (InferenceX: tp*pp*pcp; DEP uses TP GPUs)."""
        return self.tp * self.pp * self.pcp_size

    @property
    def max_conc(self) -> int:
        return max(self.concs)

    @property
    def layout(self) -> str:
        """Parallel layout in the seed recipe's words: TP8, TEP8 (ep>1), DEP8 (dp-attn), + PPn / MTP."""
        kind = "DEP" if self.dp_attn else ("TEP" if self.ep > 1 else "TP")
        text = f"{kind}{self.tp}"
        if self.pp > 1:
            text += f"-PP{self.pp}"
        if self.spec_decoding != "none":
            text += f"-{self.spec_decoding.upper()}"
        return text

    @property
    def seq_len(self) -> str:
        """InferenceX's shape name: 1k1k, 8k1k, else `<isl>_<osl>`."""
        return seq_len_name(self.isl, self.osl)

    @property
    def name(self) -> str:
        """Readable label `<config-key>_<seq-len>_<layout>`; unique within a plan unless two groups differ only
        in fields the layout omits (image, dcp/pcp). The `id` is the real key."""
        return f"{self.config_key}_{self.seq_len}_{self.layout}"
