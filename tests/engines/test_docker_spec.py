"""The exact container a GPU node gets: MiniMax-M3 FP8 on H200, DEP (dp-attn, TP8 → DP8 + EP), 8k1k."""

from __future__ import annotations

import functools
from pathlib import Path

import docker.errors
import pytest
from docker.types import DeviceRequest

from infersweep.config.inventory import Node
from infersweep.engines.docker import (
    LABEL_FINGERPRINT,
    GpuRuntimeUnavailableError,
    _start_error,
    build_container_spec,
)
from infersweep.recipes.model import Recipe

ROOT = Path(__file__).resolve().parents[2]
NODE = Node.model_validate(
    {"name": "h200-01", "runner": "h200", "docker-url": "unix:///var/run/docker.sock",
     "hf-home": "/mnt/hf", "cache-domain": "vast", "host": "10.0.0.11"}
)
MODEL = "MiniMaxAI/MiniMax-M3-MXFP8"
# What the recipe builder makes for dp-attn=true (DEP: TP8 → DP8 + EP), ISL 8192 / OSL 1024, CONC 256..512 —
# flag for flag the seed's minimaxm3_fp8_h200.sh.
ARGV = (
    "vllm", "serve", MODEL, "--port", "8888",
    "--tensor-parallel-size", "1", "--data-parallel-size", "8", "--enable-expert-parallel",
    "--gpu-memory-utilization", "0.90", "--max-model-len", "9472", "--block-size", "128",
    "--language-model-only", "--max-cudagraph-capture-size", "512", "--max-num-batched-tokens", "16384",
    "--stream-interval", "20", "--no-enable-prefix-caching", "--trust-remote-code",
)


@functools.cache
def dep_recipe() -> Recipe:
    """The real pipeline: config file → planner → serve group → vLLM recipe builder."""
    from infersweep.config.sweep import load_sweep
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters, expand_jobs
    from infersweep.recipes.vllm import build_recipe

    sweep = load_sweep([ROOT / "configs" / "minimaxm3-hopper.yaml"])
    groups = group_jobs(expand_jobs(sweep, PlanFilters(config_keys=["minimaxm3-fp8-h200-vllm"])))
    [group] = [g for g in groups if g.dp_attn and g.isl == 8192 and g.spec_decoding == "none"]
    assert group.concs == (256, 512) and group.gpus == 8
    return build_recipe(group, sweep.quirks_for(group.model_prefix, group.model), hf_cache="/mnt/hf/hub")


def test_minimax_m3_h200_dep_container_spec_is_exact():
    recipe = dep_recipe()
    group = recipe.serve_group
    assert recipe.argv == ARGV
    spec = build_container_spec(recipe, NODE, run_id="scheduled__2026-11-28T00:00:00+00:00", hf_token="hf_secret")

    assert spec.to_json() == {
        "name": f"infersweep-{group}-scheduled__2026-11-28T00-00-00-00-00-h200-01",
        "image": "vllm/vllm-openai:minimax-m3",
        "entrypoint": ["vllm"],
        "command": list(ARGV[1:]),
        "environment": {
            "HF_HUB_OFFLINE": "1", "VLLM_ENGINE_READY_TIMEOUT_S": "3600", "PYTHONNOUSERSITE": "1",
            "HF_HUB_CACHE": "/mnt/hf_hub_cache", "HF_TOKEN": "***",
        },
        "labels": {
            "infersweep.run_id": "scheduled__2026-11-28T00:00:00+00:00",
            "infersweep.serve_group": group,
            "infersweep.node": "h200-01",
            LABEL_FINGERPRINT: recipe.fingerprint(),
        },
        "device_requests": [{"Driver": "", "Count": 8, "DeviceIDs": None, "Capabilities": [["gpu"]]}],
        "mounts": [{"Type": "bind", "Source": "/mnt/hf/hub", "Target": "/mnt/hf_hub_cache", "ReadOnly": False}],
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
    assert kwargs["mounts"][0]["Target"] == "/mnt/hf_hub_cache" and kwargs["mounts"][0]["Type"] == "bind"
    assert "hf_secret" not in repr(spec.to_json())


def test_node_hf_home_is_mounted_when_the_recipe_places_no_cache():
    recipe = Recipe(image="img", argv=("vllm", "serve", MODEL), model=MODEL, gpus=1)
    spec = build_container_spec(recipe, NODE, run_id="r1")
    assert spec.environment == {"HF_HOME": "/mnt/hf", "HF_HUB_OFFLINE": "1"}
    assert spec.mounts == ({"Type": "bind", "Source": "/mnt/hf", "Target": "/mnt/hf", "ReadOnly": False},)


def test_lease_device_ids_replace_the_count():
    spec = build_container_spec(dep_recipe(), NODE, run_id="r1", device_ids=["4", "5", "6", "7"])
    assert spec.device_requests == (
        {"Driver": "", "Count": 0, "DeviceIDs": ["4", "5", "6", "7"], "Capabilities": [["gpu"]]},
    )
    assert spec.create_kwargs()["device_requests"][0]["DeviceIDs"] == ["4", "5", "6", "7"]


def test_recipe_env_wins_and_no_token_means_no_token_env():
    recipe = dep_recipe().model_copy(update={"env": {"HF_HUB_OFFLINE": "0"}, "gpus": 0, "mounts": ()})
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


AMD_NODE = Node.model_validate({"name": "mi355x-01", "runner": "mi355x-amds", "docker-url": "unix:///var/run/docker.sock",
                                "hf-home": "/mnt/hf"})


def test_amd_nodes_get_rocm_devices_not_an_nvidia_device_request():
    recipe = Recipe(image="rocm/atom:v1", argv=("python3", "-m", "atom.entrypoints.openai_server"), model=MODEL, gpus=8)
    spec = build_container_spec(recipe, AMD_NODE, run_id="r1", device_ids=["0", "1"])
    assert spec.device_requests == ()
    assert spec.devices == ("/dev/kfd:/dev/kfd:rwm", "/dev/dri:/dev/dri:rwm")
    assert (spec.group_add, spec.security_opt, spec.ipc_mode) == (("video",), ("seccomp=unconfined",), "host")
    assert spec.environment["HIP_VISIBLE_DEVICES"] == "0,1"
    kwargs = spec.create_kwargs()
    assert kwargs["devices"] == list(spec.devices) and kwargs["group_add"] == ["video"]
    assert kwargs["device_requests"] == []
    # NVIDIA nodes keep their device requests and get no ROCm devices.
    assert build_container_spec(recipe, NODE, run_id="r1").devices == ()


def test_generated_config_files_are_copied_into_the_config_dir():
    import io
    import tarfile

    from infersweep.engines.docker import config_files_tar
    from infersweep.recipes.model import CONFIG_DIR

    recipe = Recipe(image="img", argv=("trtllm-serve", MODEL), model=MODEL, gpus=0, framework="trt",
                    files={"extra.yml": "kv_cache_config:\n  dtype: fp8\n"})
    spec = build_container_spec(recipe, None, run_id="r1")
    assert spec.files == {"extra.yml": "kv_cache_config:\n  dtype: fp8\n"} and spec.to_json()["files"] == ["extra.yml"]
    with tarfile.open(fileobj=io.BytesIO(config_files_tar(spec.files))) as tar:
        names = tar.getnames()
        member = tar.extractfile(f"{CONFIG_DIR.strip('/')}/extra.yml")
        assert member is not None and member.read().decode() == "kv_cache_config:\n  dtype: fp8\n"
    assert names == ["infersweep", "infersweep/config", "infersweep/config/extra.yml"]
