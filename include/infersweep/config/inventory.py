"""Node inventory: the GPU machines a runner label maps to."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from infersweep.config.master import FieldProblem

#: Schemes docker-py accepts for an engine URL. tcp:// gets TLS from DOCKER_TLS_VERIFY / DOCKER_CERT_PATH.
DOCKER_URL_SCHEMES = ("unix://", "tcp://", "ssh://", "https://", "http://", "npipe://")


class Node(BaseModel):
    """One GPU node that can host one server at a time."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    runner: str = Field(description="runner label, e.g. h200")
    docker_url: str | None = Field(default=None, alias="docker-url", description="unix:// or tcp:// engine URL")
    gpus: int = Field(default=8, ge=1)
    gpu_memory_gb: float = Field(default=80.0, gt=0, alias="gpu-memory-gb")
    gpu_profile: str | None = Field(default=None, alias="gpu-profile", description="sim/preflight GPU profile")
    hf_home: str | None = Field(default=None, alias="hf-home", description="HF cache root on the node")
    cache_domain: str | None = Field(
        default=None, alias="cache-domain",
        description="nodes sharing one HF cache filesystem share a domain (one download per domain)",
    )
    host: str = Field(default="127.0.0.1", description="address clients use to reach served ports")

    @field_validator("docker_url")
    @classmethod
    def _docker_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(DOCKER_URL_SCHEMES):
            raise FieldProblem(f"docker-url {v!r} has no Docker engine scheme",
                               "unix:///var/run/docker.sock, ssh://user@host, or tcp://host:2376 with TLS "
                               "(DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH; see docs/security.md)")
        return v
