"""Node inventory: the GPU machines a runner label maps to."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from infersweep.config import names
from infersweep.config.master import MAX_PARALLEL, FieldProblem, at_most

#: Schemes docker-py accepts for an engine URL. tcp:// gets TLS from DOCKER_TLS_VERIFY / DOCKER_CERT_PATH.
DOCKER_URL_SCHEMES = ("unix://", "tcp://", "ssh://", "https://", "http://", "npipe://")
#: GPU memory per GPU: the largest GPUs today have 288 GB (B300, MI355X); 4 TB leaves room for a decade.
MAX_GPU_MEMORY_GB = 4096.0


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
