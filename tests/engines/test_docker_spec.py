"""The exact container a GPU node gets: MiniMax-M3 FP8 on H200, DEP (dp-attn, TP8 → DP8 + EP), 8k1k."""

from __future__ import annotations

import docker.errors
import pytest
from docker.types import DeviceRequest

from infersweep.config.inventory import Node
from infersweep.engines.docker import (
    GpuRuntimeUnavailableError,
    LABEL_FINGERPRINT,
    _start_error,
    build_container_spec,
)
from infersweep.recipes.model import Recipe

NODE = Node.model_validate(
    {"name": "h200-01", "runner": "h200", "docker-url": "unix:///var/run/docker.sock",
     "hf-home": "/mnt/hf", "cache-domain": "vast", "host": "10.0.0.11"}
)
MODEL = "MiniMaxAI/MiniMax-M3-MXFP8"
# The InferenceX recipe (minimaxm3_fp8_h200.sh) for dp-attn=true, ISL 8192 / OSL 1024, CONC up to 512.
ARGV = (
    "vllm", "serve", MODEL, "--host", "0.0.0.0", "--port", "8888",
    "--tensor-parallel-size=1", "--data-parallel-size=8", "--enable-expert-parallel",
    "--gpu-memory-utilization", "0.90", "--max-model-len", "9472", "--block-size", "128",
    "--language-model-only", "--max-num-batched-tokens", "16384", "--stream-interval", "20",
    "--no-enable-prefix-caching", "--trust-remote-code", "--max-cudagraph-capture-size", "512",
)


def dep_recipe() -> Recipe:
    return Recipe(
        image="vllm/vllm-openai:minimax-m3", argv=ARGV, model=MODEL, gpus=8, port=8888,
        env={"PYTHONNOUSERSITE": "1", "VLLM_ENGINE_READY_TIMEOUT_S": "3600"},
        serve_group="minimaxm3-fp8-h200-vllm_8k1k_tp8-ep8-dpa",
    )


def test_minimax_m3_h200_dep_container_spec_is_exact():
    recipe = dep_recipe()
    spec = build_container_spec(recipe, NODE, run_id="scheduled__2026-11-28T00:00:00+00:00", hf_token="hf_secret")

    assert spec.to_json() == {
        "name": "infersweep-minimaxm3-fp8-h200-vllm_8k1k_tp8-ep8-dpa-scheduled__2026-11-28T00-00-00-00-00-h200-01",
        "image": "vllm/vllm-openai:minimax-m3",
        "entrypoint": ["vllm"],
        "command": list(ARGV[1:]),
        "environment": {
            "HF_HOME": "/mnt/hf", "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1",
            "VLLM_ENGINE_READY_TIMEOUT_S": "3600", "HF_TOKEN": "***",
        },
        "labels": {
            "infersweep.run_id": "scheduled__2026-11-28T00:00:00+00:00",
            "infersweep.serve_group": "minimaxm3-fp8-h200-vllm_8k1k_tp8-ep8-dpa",
            "infersweep.node": "h200-01",
            LABEL_FINGERPRINT: recipe.fingerprint(),
        },
        "device_requests": [{"Driver": "", "Count": 8, "DeviceIDs": None, "Capabilities": [["gpu"]]}],
        "mounts": [{"Type": "bind", "Source": "/mnt/hf", "Target": "/mnt/hf", "ReadOnly": False}],
        "ports": {"8888/tcp": ["0.0.0.0", 8888]},
        "ipc_mode": "host",
        "shm_size": "32g",
        "network_mode": None,
    }
    # The real kwargs carry the token and docker-py's typed objects.
    kwargs = spec.create_kwargs()
    assert kwargs["environment"]["HF_TOKEN"] == "hf_secret"
    assert kwargs["device_requests"] == [DeviceRequest(count=8, capabilities=[["gpu"]])]
    assert kwargs["device_requests"][0]["Count"] == 8
    assert kwargs["ipc_mode"] == "host" and kwargs["ports"] == {"8888/tcp": ("0.0.0.0", 8888)}
    assert kwargs["mounts"][0]["Target"] == "/mnt/hf" and kwargs["mounts"][0]["Type"] == "bind"
    assert "hf_secret" not in repr(spec.to_json())


def test_lease_device_ids_replace_the_count():
    spec = build_container_spec(dep_recipe(), NODE, run_id="r1", device_ids=["4", "5", "6", "7"])
    assert spec.device_requests == (
        {"Driver": "", "Count": 0, "DeviceIDs": ["4", "5", "6", "7"], "Capabilities": [["gpu"]]},
    )
    assert spec.create_kwargs()["device_requests"][0]["DeviceIDs"] == ["4", "5", "6", "7"]


def test_recipe_env_wins_and_no_token_means_no_token_env():
    recipe = dep_recipe().model_copy(update={"env": {"HF_HUB_OFFLINE": "0"}, "gpus": 0})
    spec = build_container_spec(recipe, None, run_id="r1", host_port=0, hub_offline=True)
    assert spec.environment == {"HF_HUB_OFFLINE": "0"}
    assert spec.device_requests == ()
    assert spec.ports == {"8888/tcp": ("0.0.0.0", None)}  # 0 → Docker picks the host port
    assert spec.labels["infersweep.node"] == "local"


def test_empty_argv_is_rejected():
    with pytest.raises(ValueError, match="argv is empty"):
        build_container_spec(Recipe(image="x", argv=(), model="m"), None, run_id="r")


def test_missing_gpu_runtime_is_a_typed_permanent_error():
    exc = docker.errors.APIError(
        "500 Server Error", explanation='could not select device driver "" with capabilities: [[gpu]]'
    )
    err = _start_error(exc, build_container_spec(dep_recipe(), NODE, run_id="r"))
    assert isinstance(err, GpuRuntimeUnavailableError)
    assert err.kind == "node_misconfigured" and err.transient is False
    assert 'could not select device driver "" with capabilities: [[gpu]]' in str(err)
    from infersweep.faults import classify

    fc = classify(err)
    assert (fc.kind, fc.transient) == ("node_misconfigured", False)
    assert classify(str(exc)).kind == "node_misconfigured"  # the raw docker text too
    other = _start_error(docker.errors.APIError("500", explanation="no space left on device"),
                         build_container_spec(dep_recipe(), NODE, run_id="r"))
    assert type(other).__name__ == "EngineError" and "no space left" in str(other)
