"""A serve recipe is data, never a bash string."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class ClientSpec(BaseModel):
    """How the benchmark client talks to this server: what InferenceX's script passes its client
    (`run_benchmark_serving --backend … [--use-chat-template] [--dsv4]`), from `recipes/data/client.yaml`.

    `openai-chat` posts messages to `/v1/chat/completions` and the server applies the chat template; the
    others post to `/v1/completions`, with the prompt templated by the client when `use_chat_template`
    (DeepSeek-V4's own framing when `dsv4`). It changes what the server computes, so it is part of the
    recipe's fingerprint (unless it is the default).
    """

    # InferenceX's spelling (`use-chat-template`) in the rule table and the recipe's JSON; Python names work too.
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=lambda name: name.replace("_", "-"),
                              populate_by_name=True, serialize_by_alias=True)

    backend: Literal["vllm", "openai", "openai-chat"] = "vllm"
    use_chat_template: bool = False
    dsv4: bool = False

    @model_validator(mode="after")
    def _one_template(self) -> ClientSpec:
        if self.dsv4 and not self.use_chat_template:
            raise ValueError("client dsv4 needs use-chat-template (InferenceX's --dsv4 implies it)")
        if self.backend == "openai-chat" and self.use_chat_template:
            raise ValueError("client backend openai-chat lets the server template the messages; "
                             "use-chat-template would template them twice")
        return self

    @property
    def endpoint(self) -> str:
        """The OpenAI route the client posts to."""
        return "/v1/chat/completions" if self.backend == "openai-chat" else "/v1/completions"

    def bench_options(self) -> dict[str, Any]:
        """`BenchConfig` fields that reproduce this client: `chat` and `prompt_template`."""
        template = "dsv4" if self.dsv4 else "tokenizer" if self.use_chat_template else "none"
        return {"chat": self.backend == "openai-chat", "prompt_template": template}


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
    client: ClientSpec = Field(
        default_factory=ClientSpec,
        description="how the benchmark client talks to the server (endpoint, client-side chat template)")
    gpu_ids: tuple[int, ...] = Field(
        default=(), description="exact GPU ids on its node (a topology component's placement); empty: any `gpus`")
    host_network: bool = Field(
        default=False, description="share the node's network (multi-node workers reach each other by node address)")

    def fingerprint(self) -> str:
        """sha256 of what determines results: image, argv, env, GPUs, model.

        Where the server listens (`port`, the `--port` value) and where the node keeps its HF cache
        (mounts, `HF_HUB_CACHE`) differ per node and run without changing a number, so they are excluded:
        the same recipe on another node or port is the same recipe, and reuse finds it.
        """
        # Which GPUs of a node and its network namespace are placement too (the topology fingerprints placement).
        payload = self.model_dump(mode="json", exclude={"port", "serve_group", "mounts", "ready_timeout_s",
                                                        "gpu_ids", "host_network"})
        # Fields a vLLM recipe without them never had stay out, so its fingerprint (and store reuse) is unchanged.
        if not self.components:
            del payload["components"]
        if not self.files:
            del payload["files"]
        if self.framework == "vllm":
            del payload["framework"]
        if self.client == ClientSpec():
            del payload["client"]
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
