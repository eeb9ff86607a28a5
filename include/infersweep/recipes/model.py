"""A serve recipe is data, never a bash string."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

#: Env vars that only say where things are on a node; they never change a result.
_NODE_LOCAL_ENV = frozenset({"HF_HUB_CACHE", "HF_HOME"})
#: Where a recipe's generated engine config files (`Recipe.files`, e.g. TensorRT-LLM's LLM-API YAML) sit
#: inside the container; argv names them by this path, and the engines put the files there.
CONFIG_DIR = "/infersweep/config"
#: Options that carry the listening port, per launcher spelling (vLLM, SGLang, TRT-LLM: --port; ATOM: --server-port).
PORT_FLAGS = ("--port", "--server-port")


def _without_port(argv: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in PORT_FLAGS:
            skip = True
            continue
        if arg.startswith(tuple(f"{flag}=" for flag in PORT_FLAGS)):
            continue
        out.append(arg)
    return tuple(out)


class Mount(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    target: str
    read_only: bool = False


class Recipe(BaseModel):
    """Everything needed to start one server: image + argv + env + resources."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: str
    argv: tuple[str, ...] = Field(description="the server command line: 'vllm serve MODEL …', "
                                  "'python3 -m sglang.launch_server …', 'mpirun … trtllm-serve …', …")
    env: dict[str, str] = Field(default_factory=dict)
    gpus: int = 1
    port: int = 8888
    mounts: tuple[Mount, ...] = ()
    model: str = Field(description="HF repo id or local path that the server loads")
    served_model_name: str | None = None
    draft_model: str | None = Field(default=None, description="speculative-decoding drafter to pre-download")
    ready_timeout_s: float = 3600.0
    serve_group: str | None = None
    components: dict[str, Any] = Field(
        default_factory=dict,
        description="router / kv-p2p-transfer the topology runs with (name, version); part of the fingerprint")
    framework: str = Field(default="vllm", description="the engine family the argv is for (vllm, sglang, trt, atom)")
    files: dict[str, str] = Field(
        default_factory=dict,
        description=f"generated engine config files, name -> text, placed in {CONFIG_DIR} (part of the fingerprint)")

    def fingerprint(self) -> str:
        """sha256 of what determines results: image, argv, env, GPUs, model.

        Where the server listens (`port`, the `--port` value) and where the node keeps its HF cache
        (mounts, `HF_HUB_CACHE`) differ per node and run without changing a number, so they are excluded:
        the same recipe on another node or port is the same recipe, and reuse finds it.
        """
        payload = self.model_dump(mode="json", exclude={"port", "serve_group", "mounts", "ready_timeout_s"})
        # Fields a vLLM recipe without them never had stay out, so its fingerprint (and store reuse) is unchanged.
        if not self.components:
            del payload["components"]
        if not self.files:
            del payload["files"]
        if self.framework == "vllm":
            del payload["framework"]
        payload["argv"] = list(_without_port(self.argv))
        payload["env"] = {k: v for k, v in self.env.items() if k not in _NODE_LOCAL_ENV}
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def with_port(self, port: int) -> Recipe:
        """The same recipe listening on `port` (argv's `--port` value follows)."""
        argv = list(self.argv)
        for i, arg in enumerate(argv[:-1]):
            if arg in PORT_FLAGS:
                argv[i + 1] = str(port)
        if not set(PORT_FLAGS) & set(argv) and argv[:2] == ["vllm", "serve"]:
            argv[3:3] = ["--port", str(port)]
        return self.model_copy(update={"port": port, "argv": tuple(argv)})

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
