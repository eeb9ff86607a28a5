"""Plan data: InferenceX-compatible jobs and the serve groups we build from them.

These models are the contract between the planner and everything downstream (recipes, engines,
the DAG factory, the store). Field names follow InferenceX's matrix row with `-` turned into `_`;
`to_inferencex()` gives the reference row back with its exact keys.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from infersweep.config.master import KvOffloadBackend, Router, WorkerConfig

#: Keys of one single-node fixed-seq-len row of InferenceX's `generate_sweep_configs.py full-sweep`, in its
#: order (commit 843c6254f). Optional keys (`OPTIONAL_ROW_KEYS`) follow only when set, as upstream's
#: `component_metadata` adds them. A new upstream row key is one entry here plus the field it reads.
INFERENCEX_JOB_KEYS: tuple[str, ...] = (
    "image", "model", "model-prefix", "precision", "framework", "runner", "isl", "osl", "tp", "pp", "dcp-size",
    "pcp-size", "conc", "max-model-len", "ep", "dp-attn", "spec-decoding", "exp-name", "disagg", "run-eval",
)
#: Row keys upstream emits only when the config sets them.
OPTIONAL_ROW_KEYS: tuple[str, ...] = ("router", "kv-p2p-transfer")
#: A single-node agentic-coding row (843c6254f): no isl/osl; `kv-offload-backend` and `router` when set.
AGENTIC_JOB_KEYS: tuple[str, ...] = (
    "image", "model", "model-prefix", "precision", "framework", "runner", "tp", "pp", "dcp-size", "pcp-size",
    "ep", "dp-attn", "spec-decoding", "conc", "kv-offloading", "total-cpu-dram-gb", "duration", "exp-name",
    "scenario-type", "kv-offload-backend", "router", "run-eval",
)
#: The same row as the June 2026 generator (1ef98e3ed) wrote it, for configs still in that schema.
LEGACY_AGENTIC_JOB_KEYS: tuple[str, ...] = (
    "image", "model", "model-prefix", "precision", "framework", "runner", "tp", "ep", "dp-attn", "conc",
    "offloading", "duration", "exp-name", "scenario-type",
)
#: A multinode row (843c6254f): both pools, all concurrencies of the point on one allocation.
MULTINODE_JOB_KEYS: tuple[str, ...] = (
    "image", "model", "model-prefix", "precision", "framework", "runner", "isl", "osl", "spec-decoding", "prefill",
    "decode", "conc", "max-model-len", "exp-name", "disagg", "run-eval", "router", "kv-p2p-transfer", "eval-conc",
)
#: A multinode agentic-coding row (843c6254f): one concurrency per allocation.
MULTINODE_AGENTIC_JOB_KEYS: tuple[str, ...] = (
    "image", "model", "model-prefix", "precision", "framework", "runner", "spec-decoding", "prefill", "decode", "conc",
    "kv-offloading", "total-cpu-dram-gb", "duration", "exp-name", "disagg", "scenario-type", "kv-offload-backend",
    "router", "kv-p2p-transfer", "run-eval",
)
#: The June 2026 multinode agentic row (pools as written, one conc as an integer).
LEGACY_MULTINODE_AGENTIC_JOB_KEYS: tuple[str, ...] = (
    "image", "model", "model-prefix", "precision", "framework", "runner", "spec-decoding", "prefill", "decode", "conc",
    "duration", "exp-name", "disagg", "scenario-type",
)
AGENTIC = "agentic-coding"


def worker_row(worker: WorkerConfig, *, legacy: bool = False) -> dict[str, Any]:
    """A worker pool as the generator writes it: the keys the config set, then pp/dcp-size/pcp-size (upstream's
    `with_worker_parallelism_defaults`; June rows keep the pool as written)."""
    data = worker.model_dump(mode="json", by_alias=True)
    written = [k for k in worker.yaml_order if k in data]
    rest = [k for k in data if k not in written and (worker.model_fields[_attr(k)].is_required()
                                                     or _attr(k) in worker.model_fields_set)]
    row = {key: data[key] for key in [*written, *rest]}
    if not legacy:
        row.update({k: data[k] for k in ("pp", "dcp-size", "pcp-size")})
    return row


def _attr(key: str) -> str:
    return key.replace("-", "_")


def _row(data: dict[str, Any], keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    """`keys` in order from a `model_dump(mode="json")`, skipping `optional` keys whose value is None."""
    row = {}
    for key in keys:
        value = data[key.replace("-", "_")]
        if value is None and key in optional:
            continue
        row[key] = value
    return row


def seq_len_name(isl: int, osl: int) -> str:
    """InferenceX's shape name: 1k1k, 8k1k, else `<isl>_<osl>`."""
    return {(1024, 1024): "1k1k", (8192, 1024): "8k1k"}.get((isl, osl), f"{isl}_{osl}")


def layout_name(*, tp: int, ep: int = 1, dp_attn: bool = False, pp: int = 1, dcp_size: int = 1, pcp_size: int = 1,
                spec_decoding: str | None = "none") -> str:
    """A parallel layout in the seed recipe's words: TP8, TEP8 (ep>1), DEP8 (dp-attn), + PPn / DCPn / PCPn / MTP."""
    kind = "DEP" if dp_attn else ("TEP" if ep > 1 else "TP")
    text = f"{kind}{tp}"
    for name, size in (("PP", pp), ("DCP", dcp_size), ("PCP", pcp_size)):
        if size > 1:
            text += f"-{name}{size}"
    if spec_decoding and spec_decoding != "none":
        text += f"-{spec_decoding.upper()}"
    return text


def pools_label(pools: Sequence[Mapping[str, Any]]) -> str:
    """A multinode topology in a few characters, pool after pool: `1p-tp8+2d-tp8-ep8-dpa` (workers, the pool
    role's initial, then its layout), from stored pool rows (`WorkerPool` as JSON) or report records."""
    def one(pool: Mapping[str, Any]) -> str:
        parts = [f"{pool.get('num_worker', 1)}{str(pool.get('role', 'w'))[0]}", f"tp{pool.get('tp', 1)}"]
        if (pool.get("ep") or 1) > 1:
            parts.append(f"ep{pool['ep']}")
        if (pool.get("pp") or 1) > 1:
            parts.append(f"pp{pool['pp']}")
        if pool.get("dp_attn"):
            parts.append("dpa")
        return "-".join(parts)

    return "+".join(one(p) for p in pools)


def layout_of(row: Mapping[str, Any]) -> str:
    """`layout_name` of a stored group or point row (its nullable layout columns default to 1 / none)."""
    return layout_name(tp=row["tp"] or 1, ep=row["ep"] or 1, dp_attn=bool(row["dp_attn"]), pp=row["pp"] or 1,
                       dcp_size=row["dcp_size"] or 1, pcp_size=row["pcp_size"] or 1,
                       spec_decoding=row["spec_decoding"])


PoolRole = Literal["prefill", "decode", "aggregated"]
_ROLE_LETTER = {"prefill": "P", "decode": "D", "aggregated": "W"}


class WorkerPool(BaseModel):
    """One pool of workers of a topology: every worker has the same parallel layout and hardware."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: PoolRole
    num_worker: int = Field(ge=1)
    tp: int = Field(ge=1)
    pp: int = Field(default=1, ge=1)
    ep: int = Field(default=1, ge=1)
    dp_attn: bool = False
    dcp_size: int = Field(default=1, ge=1)
    pcp_size: int = Field(default=1, ge=1)
    runner: str = Field(description="runner label whose nodes this pool leases")
    hardware: str | None = Field(default=None, description="GPU SKU of a heterogeneous pool (None: the runner's)")
    gpus_per_node: int = Field(default=8, ge=1)
    additional_settings: tuple[str, ...] = ()

    @property
    def gpus_per_worker(self) -> int:
        """GPUs one worker occupies (InferenceX: tp x pp x pcp)."""
        return self.tp * self.pp * self.pcp_size

    @property
    def gpus(self) -> int:
        """GPUs of the whole pool (InferenceX's PREFILL_GPUS / DECODE_GPUS)."""
        return self.num_worker * self.gpus_per_worker

    @property
    def nodes_per_worker(self) -> int:
        """Whole nodes one worker spans (1 when it fits on a node)."""
        return max(1, math.ceil(self.gpus_per_worker / self.gpus_per_node))

    @property
    def workers_per_node(self) -> int:
        """Workers packed onto one node (1 when a worker needs a node or more)."""
        return max(1, self.gpus_per_node // self.gpus_per_worker)

    @property
    def nodes(self) -> int:
        """Nodes this pool leases."""
        if self.nodes_per_worker > 1:
            return self.num_worker * self.nodes_per_worker
        return math.ceil(self.num_worker / self.workers_per_node)

    @property
    def label(self) -> str:
        """`2xTP8`, `1xDEP16` …: workers x layout, as the reports name a pool."""
        kind = "DEP" if self.dp_attn else ("TEP" if self.ep > 1 else "TP")
        return f"{self.num_worker}x{kind}{self.tp}" + (f"-PP{self.pp}" if self.pp > 1 else "")


class EntryIdentity(BaseModel):
    """The config entry a row comes from: key, what is served (image, model) and where (runner)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config_key: str
    image: str
    model: str
    model_prefix: str
    precision: str
    framework: str
    runner: str


class ServerSpec(EntryIdentity):
    """What one server is: the config key, image, model and topology. Shared by jobs and serve groups."""

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
    router: Router | None = Field(default=None, description="router/frontend in front of the engine (recorded)")
    kv_p2p_transfer: str | None = Field(default=None, description="KV transfer engine (multinode only upstream)")


class Job(ServerSpec):
    """One benchmark point: one (config key, isl/osl, search-space point, conc)."""

    conc: int
    run_eval: bool = False

    def to_inferencex(self) -> dict[str, Any]:
        """The reference generator's row: `INFERENCEX_JOB_KEYS`, then the optional keys that are set."""
        return _row(self.model_dump(mode="json"), INFERENCEX_JOB_KEYS + OPTIONAL_ROW_KEYS, OPTIONAL_ROW_KEYS)


class AgenticJob(EntryIdentity):
    """One agentic-coding (trace replay) point: planned exactly as InferenceX does, not executed yet.

    `legacy` rows come from configs in the June 2026 schema (`offloading`, `duration`) and keep that
    generator's row shape; the others follow 843c6254f (kv-offloading, its backend, the DRAM budget).
    """

    tp: int
    pp: int = 1
    dcp_size: int = 1
    pcp_size: int = 1
    ep: int = 1
    dp_attn: bool = False
    spec_decoding: str = "none"
    conc: int
    kv_offloading: str = "none"
    kv_offload_backend: KvOffloadBackend | None = None
    offloading: str | None = Field(default=None, description="June 2026 schema only")
    total_cpu_dram_gb: int = Field(default=0, ge=0, description="DRAM offload budget of the server's node")
    duration: int = Field(gt=0, description="trace replay length, s")
    exp_name: str
    scenario_type: str = AGENTIC
    router: Router | None = None
    run_eval: bool = False
    legacy: bool = False

    @property
    def gpus(self) -> int:
        """GPUs of the server (tp x pp x pcp, as for fixed-seq-len groups)."""
        return self.tp * self.pp * self.pcp_size

    def to_inferencex(self) -> dict[str, Any]:
        """The generator's agentic row (843c6254f, or the June 2026 shape for legacy configs)."""
        data = self.model_dump(mode="json")
        if self.legacy:
            return _row(data, LEGACY_AGENTIC_JOB_KEYS)
        if data["kv_offload_backend"] is not None:
            # Upstream dumps the backend as written: an unset version is absent, not null.
            data["kv_offload_backend"] = {k: v for k, v in data["kv_offload_backend"].items() if v is not None}
        return _row(data, AGENTIC_JOB_KEYS, ("kv-offload-backend", "router"))


class ServeGroup(ServerSpec):
    """Jobs that differ only in `conc`: one server boot serves all of them.

    `id` is a short, stable fingerprint of the canonical recipe inputs (everything but conc), so the
    same topology gets the same id across runs, machines and config-file reorderings.
    """

    id: str
    concs: tuple[int, ...] = Field(description="ascending")
    eval_concs: tuple[int, ...] = ()
    pools: tuple[WorkerPool, ...] = Field(
        default=(), description="multinode: the worker pools (prefill, decode); empty for a single-node server")

    @property
    def multinode(self) -> bool:
        """A topology of worker pools over several processes (and usually nodes)."""
        return bool(self.pools)

    @property
    def gpus(self) -> int:
        """GPUs the group's server occupies: tp*pp*pcp (DEP uses TP GPUs), or every GPU of every pool of a
        multinode topology (InferenceX's PREFILL_GPUS + DECODE_GPUS)."""
        if self.pools:
            return sum(p.gpus for p in self.pools)
        return self.tp * self.pp * self.pcp_size

    def pool_gpus(self, role: PoolRole) -> int:
        """GPUs of the pools with `role` (0 when there is none)."""
        return sum(p.gpus for p in self.pools if p.role == role)

    @property
    def nodes(self) -> int:
        """Nodes the group leases at once: 1, or the sum of its pools' nodes (pools never share a node)."""
        return sum(p.nodes for p in self.pools) if self.pools else 1

    @property
    def max_conc(self) -> int:
        return max(self.concs)

    @property
    def layout(self) -> str:
        """Parallel layout in the seed recipe's words: TP8, TEP8 (ep>1), DEP8 (dp-attn), + PPn / DCPn / PCPn / MTP;
        a disaggregated topology names its pools: `1P-TP8+2D-DEP16`."""
        if self.pools:
            text = "+".join(f"{p.num_worker}{_ROLE_LETTER[p.role]}-{p.label.split('x', 1)[1]}" for p in self.pools)
            if self.spec_decoding and self.spec_decoding != "none":
                text += f"-{self.spec_decoding.upper()}"
            return text
        return layout_name(tp=self.tp, ep=self.ep, dp_attn=self.dp_attn, pp=self.pp, dcp_size=self.dcp_size,
                           pcp_size=self.pcp_size, spec_decoding=self.spec_decoding)

    @property
    def seq_len(self) -> str:
        """InferenceX's shape name: 1k1k, 8k1k, else `<isl>_<osl>`."""
        return seq_len_name(self.isl, self.osl)

    @property
    def name(self) -> str:
        """Readable label `<config-key>_<seq-len>_<layout>`; unique within a plan unless two groups differ only
        in fields the layout omits (image, router). The `id` is the real key."""
        return f"{self.config_key}_{self.seq_len}_{self.layout}"


class MultinodeJob(EntryIdentity):
    """One multinode row (fixed-seq-len or agentic-coding): planned exactly as InferenceX does, not executed.

    Its pools (`prefill`, `decode`) keep every field of the config; `conc` holds all the concurrencies that
    share one allocation (one for agentic rows). Running these is issue #20's work.
    """

    isl: int | None = None
    osl: int | None = None
    spec_decoding: str = "none"
    prefill: WorkerConfig
    decode: WorkerConfig
    conc: tuple[int, ...]
    max_model_len: int | None = None
    exp_name: str
    disagg: bool = False
    run_eval: bool = False
    eval_conc: int | None = None
    router: Router | None = None
    kv_p2p_transfer: str | None = None
    scenario_type: str | None = None
    kv_offloading: str = "none"
    kv_offload_backend: KvOffloadBackend | None = None
    total_cpu_dram_gb: int = Field(default=0, ge=0)
    duration: int | None = None
    legacy: bool = False

    @property
    def gpus(self) -> int:
        """Every GPU of every worker of both pools."""
        return sum(w.num_worker * w.tp * w.pp * w.pcp_size for w in (self.prefill, self.decode))

    def to_inferencex(self) -> dict[str, Any]:
        """The generator's multinode row."""
        data = self.model_dump(mode="json")
        data["prefill"] = worker_row(self.prefill, legacy=self.legacy)
        data["decode"] = worker_row(self.decode, legacy=self.legacy)
        data["conc"] = list(self.conc)
        if data["kv_offload_backend"] is not None:
            data["kv_offload_backend"] = {k: v for k, v in data["kv_offload_backend"].items() if v is not None}
        if self.scenario_type is None:
            return _row(data, MULTINODE_JOB_KEYS, (*OPTIONAL_ROW_KEYS, "eval-conc"))
        if self.legacy:
            data["conc"] = self.conc[0]
            return _row(data, LEGACY_MULTINODE_AGENTIC_JOB_KEYS)
        return _row(data, MULTINODE_AGENTIC_JOB_KEYS, ("kv-offload-backend", *OPTIONAL_ROW_KEYS))
