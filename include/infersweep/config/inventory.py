"""Node inventory: the GPU machines a runner label maps to."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from infersweep.config import names
from infersweep.config.master import MAX_PARALLEL, FieldProblem, at_most

#: Schemes docker-py accepts for an engine URL. tcp:// gets TLS from DOCKER_TLS_VERIFY / DOCKER_CERT_PATH.
DOCKER_URL_SCHEMES = ("unix://", "tcp://", "ssh://", "https://", "http://", "npipe://")
#: GPU memory per GPU: the largest GPUs today have 288 GB (B300, MI355X); 4 TB leaves room for a decade.
MAX_GPU_MEMORY_GB = 4096.0
#: USD per GPU-hour: on-demand cloud prices today are $1-15 per GPU; $1,000 catches a price per node or in
#: cents without refusing any real price.
MAX_COST_PER_GPU_HOUR = 1000.0
COST_KEY = "cost-per-gpu-hour"


class Node(BaseModel):
    """One GPU node that can host one server at a time."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    runner: str = Field(description="runner label, e.g. h200")
    docker_url: str | None = Field(default=None, alias="docker-url", description="unix:// or tcp:// engine URL")
    gpus: Annotated[int, Field(ge=1), at_most(MAX_PARALLEL, "no node holds that many GPUs")] = 8
    gpu_memory_gb: float = Field(default=80.0, gt=0, alias="gpu-memory-gb")
    gpu_profile: str | None = Field(default=None, alias="gpu-profile", description="sim/preflight GPU profile")
    hf_home: str | None = Field(default=None, alias="hf-home", description="HF cache root on the node")
    cache_domain: str | None = Field(
        default=None, alias="cache-domain",
        description="nodes sharing one HF cache filesystem share a domain (one download per domain)",
    )
    host: str = Field(default="127.0.0.1", description="address clients use to reach served ports")
    cost_per_gpu_hour: float | None = Field(
        default=None, alias=COST_KEY,
        description="USD per GPU-hour of this runner label (every node of a label states the same value, or "
                    "none does); reports turn it into $ per million output tokens",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        problem = names.check_node_name(v)
        if problem:
            raise FieldProblem(f"node name {names.quote(v)} {problem}", names.NODE_NAME_ALLOWED)
        return v

    @field_validator("runner")
    @classmethod
    def _runner(cls, v: str) -> str:
        problem = names.check_tag(v)
        if problem:
            raise FieldProblem(f"runner {names.quote(v)} cannot be an Airflow DAG tag: it {problem}",
                               names.tag_allowed(example="h200, cluster:b300-nv"))
        return v

    @field_validator("docker_url")
    @classmethod
    def _docker_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        problem = names.check_docker_url(v)
        if problem:
            raise FieldProblem(f"docker-url {names.quote(v)} {problem}", names.DOCKER_URL_ALLOWED)
        if not v.startswith(DOCKER_URL_SCHEMES):
            raise FieldProblem(f"docker-url {v!r} has no Docker engine scheme",
                               "unix:///var/run/docker.sock, ssh://user@host, or tcp://host:2376 with TLS "
                               "(DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH; see docs/security.md)")
        return v

    @field_validator("hf_home")
    @classmethod
    def _hf_home(cls, v: str | None) -> str | None:
        problem = names.check_abs_path(v) if v is not None else None
        if problem:
            raise FieldProblem(f"hf-home {names.quote(v or '')} {problem}", names.ABS_PATH_ALLOWED)
        return v

    @field_validator("gpu_memory_gb")
    @classmethod
    def _gpu_memory(cls, v: float) -> float:
        if not v <= MAX_GPU_MEMORY_GB:  # also NaN and infinity
            raise FieldProblem(f"must be at most {MAX_GPU_MEMORY_GB:g}, got {v:g}: memory of one GPU, in GB "
                               "(the largest today have 288)", f"a value <= {MAX_GPU_MEMORY_GB:g}")
        return v

    @field_validator("cost_per_gpu_hour", mode="before")
    @classmethod
    def _cost_type(cls, v: Any) -> Any:
        # `true` and "3.5" would pass float's lax coercion; a price is written as a plain number.
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            kind = "true/false" if isinstance(v, bool) else "a string" if isinstance(v, str) else type(v).__name__
            raise FieldProblem(f"must be a number of US dollars per GPU-hour, got {kind}", "a number > 0, e.g. 3.5")
        return v

    @field_validator("cost_per_gpu_hour")
    @classmethod
    def _cost(cls, v: float | None) -> float | None:
        allowed = f"a value > 0 and <= {MAX_COST_PER_GPU_HOUR:,.0f}"
        if v is not None and not v > 0 and not math.isnan(v):
            raise FieldProblem(f"must be greater than 0, got {v:g}: US dollars per GPU-hour (leave the key out "
                               "when the cost is unknown)", allowed)
        if v is not None and not (math.isfinite(v) and v <= MAX_COST_PER_GPU_HOUR):  # also NaN and infinity
            raise FieldProblem(f"must be at most {MAX_COST_PER_GPU_HOUR:,.0f}, got {v:g}: US dollars per GPU-hour "
                               "(per GPU, not per node)", allowed)
        return v


def label_cost_problem(label: str, others: Sequence[Node], node: Node) -> tuple[str, str] | None:
    """(message, allowed) when `node` disagrees on cost-per-gpu-hour with the nodes of its runner label already
    loaded (`others`, possibly from other files), else None.

    The rule: every node of one runner label states the same cost-per-gpu-hour, or none does. A cost is a
    property of the label (reports price points by runner, and `--cost-per-gpu-hour RUNNER=USD` overrides a
    label), so a mix would price the same measurement differently depending on which node was leased; no
    node silently wins. The sweep loader reports the message at the node's `cost-per-gpu-hour` key.
    """
    # The loader's own rule for files a sweep file points to: messages name keys, never values (node names,
    # prices); `redacted_values()` is active while such a file is loaded.
    from infersweep.config.schema_errors import _REDACT

    if not others:
        return None
    first = others[0]
    if node.cost_per_gpu_hour == first.cost_per_gpu_hour:
        return None
    redact = _REDACT.get()
    this = "this node" if redact else f"node '{node.name}'"
    that = "the label's first node" if redact else f"node '{first.name}' of runner label '{label}'"
    fix = (f"the same {COST_KEY} on every node of the label (a YAML anchor keeps them together), or on none; "
           "a node with another price needs a runner label of its own")
    if node.cost_per_gpu_hour is None:
        return f"{this} has no {COST_KEY} but {that} has one", fix
    if first.cost_per_gpu_hour is None:
        return f"{this} sets {COST_KEY} but {that} does not", fix
    if redact:
        return f"{COST_KEY} of this node differs from that of {that}", fix
    return (f"{COST_KEY} {node.cost_per_gpu_hour:g} of {this} differs from {first.cost_per_gpu_hour:g} of {that}",
            fix)


def label_costs(inventory: dict[str, list[Node]]) -> dict[str, float]:
    """Runner label → USD per GPU-hour, for the labels whose nodes state one (the loader made them agree)."""
    return {label: nodes[0].cost_per_gpu_hour for label, nodes in inventory.items()
            if nodes and nodes[0].cost_per_gpu_hour is not None}
