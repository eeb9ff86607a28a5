"""A serve recipe is data, never a bash string."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field


class Mount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    target: str
    read_only: bool = False


class Recipe(BaseModel):
    """Everything needed to start one server: image + argv + env + resources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str
    argv: tuple[str, ...] = Field(description="starts with 'vllm serve MODEL' for vLLM recipes")
    env: dict[str, str] = Field(default_factory=dict)
    gpus: int = 1
    port: int = 8888
    mounts: tuple[Mount, ...] = ()
    model: str = Field(description="HF repo id or local path that the server loads")
    served_model_name: str | None = None
    draft_model: str | None = Field(default=None, description="speculative-decoding drafter to pre-download")
    ready_timeout_s: float = 3600.0
    serve_group: str | None = None

    def fingerprint(self) -> str:
        """sha256 of the canonical recipe (port excluded: it does not change results)."""
        payload = self.model_dump(mode="json", exclude={"port", "serve_group"})
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
