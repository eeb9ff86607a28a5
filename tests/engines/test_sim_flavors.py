"""`--flavor`: SGLang / TensorRT-LLM / ATOM recipes on the simulator, and each engine's observable behaviour."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

from infersweep.engines.readiness import http_get, wait_ready
from infersweep.engines.sim.config import parse_sim_argv, recipe_to_sim_argv, sim_command
from infersweep.engines.sim_engine import SimulatedEngine, fault_args
from infersweep.recipes.model import CONFIG_DIR, Recipe

from .sim_helpers import sim_client, sse_events

DSR1 = "deepseek-ai/DeepSeek-R1-0528"

# dsr1_fp8_b200_mtp.sh (InferenceX 1ef98e3ed), TP=8 EP_SIZE=8 CONC=64, as the launcher receives it.
SGLANG_LAUNCH = (
    "python3", "-m", "sglang.launch_server", f"--model-path={DSR1}", "--host=0.0.0.0", "--port=8888",
    "--tensor-parallel-size=8", "--data-parallel-size=1", "--cuda-graph-max-bs", "128",
    "--max-running-requests", "128", "--mem-fraction-static", "0.82", "--kv-cache-dtype", "fp8_e4m3",
    "--chunked-prefill-size", "32768", "--max-prefill-tokens", "32768", "--enable-flashinfer-allreduce-fusion",
    "--scheduler-recv-interval", "30", "--disable-radix-cache", "--fp8-gemm-backend=flashinfer_trtllm",
    "--attention-backend", "trtllm_mla", "--stream-interval", "30", "--ep-size", "8",
    "--moe-runner-backend", "flashinfer_trtllm", "--quantization", "fp8", "--speculative-algorithm", "EAGLE",
    "--speculative-num-steps", "3", "--speculative-num-draft-tokens", "4", "--speculative-eagle-topk", "1",
)
# dsv4_fp4_b300_sglang_mtp.sh's DP-attention branch, shape of `sglang serve` (model swapped for a profiled one).
SGLANG_SERVE_DPA = (
    "sglang", "serve", "--model-path", DSR1, "--served-model-name", "dsr1", "--host", "0.0.0.0", "--port", "8888",
    "--trust-remote-code", "--tp", "8", "--ep-size", "8", "--chunked-prefill-size", "32768",
    "--max-running-requests", "256", "--mem-fraction-static", "0.92", "--swa-full-tokens-ratio", "0.1",
    "--dp-size", "8", "--enable-dp-attention", "--moe-runner-backend", "flashinfer_mxfp4",
    "--disable-flashinfer-autotune", "--deepep-config", "/cfg/deepep.json", "--cuda-graph-max-bs", "256",
    "--context-length", "9472",
)
# dsr1_fp4_b200_trt_mtp.sh, DP_ATTENTION=true CONC=256 TP=8 EP_SIZE=8 ISL=1024: argv plus its generated YAML.
TRT_YAML = """\
cuda_graph_config:
    enable_padding: true
    max_batch_size: 64
enable_attention_dp: true
print_iter_log: true
kv_cache_config:
    dtype: fp8
    free_gpu_memory_fraction: 0.8
    enable_block_reuse: false
stream_interval: 10
moe_config:
    backend: CUTLASS
speculative_config:
    decoding_type: MTP
    num_nextn_predict_layers: 1
attention_dp_config:
    batching_wait_iters: 0
    enable_balance: true
    timeout_iters: 60
"""
TRT_LAUNCH = (
    "mpirun", "-n", "1", "--oversubscribe", "--allow-run-as-root", "trtllm-serve", DSR1, "--port=8888",
    "--trust_remote_code", "--backend=pytorch", "--max_batch_size=64", "--max_seq_len=2248",
    "--max_num_tokens=1344", "--tp_size=8", "--ep_size=8", f"--extra_llm_api_options={CONFIG_DIR}/dsr1-fp4-mtp.yml",
)
# dsr1_fp8_mi355x_atom_mtp.sh, DP_ATTENTION=true EP_SIZE=8, eval context.
ATOM_LAUNCH = (
    "python3", "-m", "atom.entrypoints.openai_server", "--model", DSR1, "--server-port", "8888", "-tp", "8",
    "--enable-expert-parallel", "--enable-dp-attention", "--method", "mtp", "--num-speculative-tokens", "3",
    "--kv_cache_dtype", "fp8", "--max-model-len", "10240", "--no-enable_prefix_caching",
)


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


# --- recipe -> sim flags -------------------------------------------------------------------------------

def test_sglang_launch_server_maps_onto_sim_flags() -> None:
    recipe = Recipe(image="lmsysorg/sglang:v0.5.12-cu130", argv=SGLANG_LAUNCH, model=DSR1, framework="sglang",
                    gpus=8, port=8888)
    argv = recipe_to_sim_argv(recipe, gpu_profile="b200", time_scale=10)
    assert argv[:5] == ["sim", "serve", DSR1, "--flavor", "sglang"]
    cfg = parse_sim_argv(argv[2:])
    assert cfg.flavor == "sglang" and cfg.port == 8888 and cfg.host == "0.0.0.0"
    assert (cfg.tp, cfg.dp, cfg.ep) == (8, 1, 8)
    assert cfg.max_num_seqs == 128 and cfg.gpu_memory_utilization == 0.82
    assert cfg.kv_cache_dtype == "fp8_e4m3" and cfg.max_num_batched_tokens == 32768
    assert cfg.stream_interval == 30 and cfg.precision == "fp8"
    assert json.loads(_flag(argv, "--speculative-config")) == {
        "method": "eagle", "num_speculative_tokens": 3, "num_draft_tokens": 4, "eagle_topk": 1}
    assert cfg.model == DSR1 and cfg.model_profile == "deepseek-r1" and cfg.gpu_profile == "b200"
    # Accepted, no effect in the simulator, and said so in /version.
    for flag in ("--cuda-graph-max-bs", "--attention-backend", "--disable-radix-cache", "--fp8-gemm-backend"):
        assert flag in cfg.ignored_recipe_flags
    assert "--model-path" not in cfg.ignored_recipe_flags


def test_sglang_serve_with_dp_attention() -> None:
    """--tp 8 --dp-size 8 --enable-dp-attention: 8 GPUs, attention DP 8 × TP 1, experts over all 8."""
    recipe = Recipe(image="x", argv=SGLANG_SERVE_DPA, model=DSR1, framework="sglang", gpus=8, port=8888)
    cfg = parse_sim_argv(recipe_to_sim_argv(recipe, gpu_profile="b300")[2:])
    assert (cfg.tp, cfg.dp, cfg.ep) == (1, 8, 8)
    assert cfg.model == "dsr1" and cfg.max_model_len == 9472 and cfg.max_num_seqs == 256
    assert cfg.gpu_memory_utilization == 0.92 and cfg.max_num_batched_tokens == 32768
    assert cfg.stream_interval == 1  # SGLang's default, as the sim's
    # Without --enable-dp-attention, --dp-size is that many full replicas.
    plain = tuple(a for a in SGLANG_SERVE_DPA if a != "--enable-dp-attention")
    plain = tuple(a if a != "--ep-size" else "--swa-x" for a in plain)  # EP within replicas is not modelled
    cfg = parse_sim_argv(recipe_to_sim_argv(Recipe(image="x", argv=plain, model=DSR1, framework="sglang"))[2:])
    assert (cfg.tp, cfg.dp, cfg.ep) == (8, 8, 1)


def test_trt_llm_api_yaml_maps_onto_sim_flags() -> None:
    recipe = Recipe(image="nvcr.io/nvidia/tensorrt-llm/release:1.3.0rc14", argv=TRT_LAUNCH, model=DSR1,
                    framework="trt", gpus=8, port=8888, files={"dsr1-fp4-mtp.yml": TRT_YAML})
    argv = recipe_to_sim_argv(recipe, gpu_profile="b200")
    cfg = parse_sim_argv(argv[2:])
    assert cfg.flavor == "trt" and cfg.port == 8888
    assert (cfg.tp, cfg.dp, cfg.ep) == (1, 8, 8)  # enable_attention_dp over tp_size 8
    assert (cfg.max_num_seqs, cfg.max_model_len, cfg.max_num_batched_tokens) == (64, 2248, 1344)
    assert cfg.kv_free_gpu_memory_fraction == 0.8 and cfg.kv_cache_dtype == "fp8"
    assert cfg.stream_interval == 10 and cfg.block_size == 32  # YAML stream_interval; TRT's tokens_per_block
    assert json.loads(_flag(argv, "--speculative-config")) == {"method": "mtp", "num_speculative_tokens": 1}
    assert "moe_config.backend" in cfg.ignored_recipe_flags and "--backend" in cfg.ignored_recipe_flags


def test_trt_defaults_and_yaml_over_cli() -> None:
    """Without the flags, TensorRT-LLM's defaults apply; the YAML wins over the CLI, as in trtllm-serve."""
    argv = ("trtllm-serve", DSR1, "--backend", "pytorch", "--tp_size", "8", "--max_batch_size", "32",
            "--config", "extra.yml")
    recipe = Recipe(image="x", argv=argv, model=DSR1, framework="trt", gpus=8, port=9001,
                    files={"extra.yml": "max_batch_size: 48\nkv_cache_config:\n  tokens_per_block: 64\n"})
    cfg = parse_sim_argv(recipe_to_sim_argv(recipe)[2:])
    assert cfg.port == 9001 and (cfg.tp, cfg.dp, cfg.ep) == (8, 1, 1)
    assert cfg.max_num_seqs == 48 and cfg.block_size == 64
    assert cfg.max_num_batched_tokens == 8192 and cfg.kv_free_gpu_memory_fraction == 0.9
    assert cfg.stream_interval == 1


def test_atom_launch_maps_onto_sim_flags() -> None:
    recipe = Recipe(image="rocm/atom:0.1.3", argv=ATOM_LAUNCH, model=DSR1, framework="atom", gpus=8, port=8888)
    argv = recipe_to_sim_argv(recipe, gpu_profile="mi355x")
    cfg = parse_sim_argv(argv[2:])
    assert cfg.flavor == "atom" and cfg.port == 8888
    assert (cfg.tp, cfg.dp, cfg.ep) == (1, 8, 8)
    assert cfg.kv_cache_dtype == "fp8" and cfg.max_model_len == 10240
    assert json.loads(_flag(argv, "--speculative-config")) == {"method": "mtp", "num_speculative_tokens": 3}
    plain = ("python3", "-m", "atom.entrypoints.openai_server", "--model", DSR1, "--server-port", "8123",
             "-tp", "4", "--kv_cache_dtype", "fp8", "--gpu-memory-utilization", "0.85", "--max-num-seqs", "64",
             "--trust-remote-code", "--default-chat-template-kwargs", '{"enable_thinking": false}')
    cfg = parse_sim_argv(recipe_to_sim_argv(Recipe(image="x", argv=plain, model=DSR1, framework="atom"))[2:])
    assert (cfg.tp, cfg.dp, cfg.ep, cfg.port) == (4, 1, 1, 8123)
    assert cfg.gpu_memory_utilization == 0.85 and cfg.max_num_seqs == 64
    assert "--default-chat-template-kwargs" in cfg.ignored_recipe_flags


@pytest.mark.parametrize("recipe, message", [
    (Recipe(image="x", argv=("dynamo", "serve"), model=DSR1, framework="dynamo"), "unknown recipe framework"),
    (Recipe(image="x", argv=("vllm", "serve", DSR1), model=DSR1, framework="sglang"),
     "not a sglang launch command"),
    (Recipe(image="x", argv=("trtllm-serve", DSR1, "--config", f"{CONFIG_DIR}/missing.yml"), model=DSR1,
            framework="trt"), "recipe.files has no 'missing.yml'"),
    (Recipe(image="x", argv=("trtllm-serve", DSR1, "--tp_size", "8", "--ep_size", "4"), model=DSR1,
            framework="trt"), "expert parallelism 4 is not modelled"),
])
def test_bad_recipes_fail_clearly(recipe: Recipe, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recipe_to_sim_argv(recipe)


def test_engine_command_and_fault_selector_for_other_frameworks() -> None:
    recipe = Recipe(image="x", argv=ATOM_LAUNCH, model=DSR1, framework="atom", gpus=8, port=8888)
    cmd = SimulatedEngine(python="/py").command(recipe, None)
    assert cmd[:5] == ["/py", "-m", "infersweep.cli", "sim", "serve"] and "--flavor" in cmd
    assert fault_args(recipe, '{"tp=8": ["--startup-delay", "1"]}') == ["--startup-delay", "1"]
    trt = Recipe(image="x", argv=TRT_LAUNCH, model=DSR1, framework="trt", files={"dsr1-fp4-mtp.yml": TRT_YAML})
    assert fault_args(trt, '{"tp=8": ["--die-after-requests", "3"]}') == ["--die-after-requests", "3"]


# --- the server's behaviour per flavor -------------------------------------------------------------------

async def _stream(client: Any, max_tokens: int) -> list[Any]:
    resp = await client.post("/v1/completions", json={
        "prompt": "The capital of France is", "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
        "stream_options": {"include_usage": True}})
    assert resp.status == 200
    return sse_events(await resp.text())


@pytest.mark.parametrize("flavor, interval", [("vllm", 1), ("sglang", 4), ("trt", 10), ("atom", 3)])
def test_streams_multi_token_chunks_with_exact_usage(flavor: str, interval: int) -> None:
    asyncio.run(_test_streams_multi_token_chunks_with_exact_usage(flavor, interval))


async def _test_streams_multi_token_chunks_with_exact_usage(flavor: str, interval: int) -> None:
    async with sim_client(flavor=flavor, stream_interval=interval) as (client, _):
        events = await _stream(client, 25)
    assert events[-1] == "[DONE]"
    usage_chunk = events[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 25
    content = [e for e in events[:-2] if e["choices"]]
    # The first token goes at once, then one event per `interval` tokens, the last with the finish reason.
    assert len(content) == 1 + -(-24 // interval)
    assert content[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("flavor, prefix, owned_by", [
    ("vllm", "vllm:", "vllm"), ("sglang", "sglang:", "sglang"), ("atom", "vllm:", "atom")])
def test_health_metrics_version(flavor: str, prefix: str, owned_by: str) -> None:
    asyncio.run(_test_health_metrics_version(flavor, prefix, owned_by))


async def _test_health_metrics_version(flavor: str, prefix: str, owned_by: str) -> None:
    async with sim_client(flavor=flavor, model_profile="llama-3.1-8b") as (client, _):
        await _stream(client, 5)
        assert (await client.get("/health")).status == 200
        metrics = await (await client.get("/metrics")).text()
        version = await (await client.get("/version")).json()
        card = (await (await client.get("/v1/models")).json())["data"][0]
        generate = await client.get("/health_generate")
    assert card["owned_by"] == owned_by
    assert "sim:gpu_power_watts{" in metrics  # the simulator's own series stay, for telemetry
    names = {line.split("{")[0].split(" ")[0] for line in metrics.splitlines() if not line.startswith("#")}
    engine_names = {n for n in names if not n.startswith("sim:")}
    assert engine_names and all(n.startswith(prefix) for n in engine_names)
    assert version["version"].startswith("sim-")
    if flavor == "vllm":
        assert "flavor" not in version  # vLLM's /version is unchanged
        assert generate.status == 404
    else:
        assert version["flavor"] == flavor
    if flavor == "sglang":
        assert generate.status == 200
        assert 'sglang:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 5' in metrics
        assert "sglang:num_running_reqs{" in metrics and "sglang:token_usage{" in metrics
    if flavor == "atom":
        assert "vllm:num_requests_running{" in metrics


def test_trt_metrics_are_iteration_stats_json_and_prometheus_elsewhere() -> None:
    asyncio.run(_test_trt_metrics_are_iteration_stats_json_and_prometheus_elsewhere())


async def _test_trt_metrics_are_iteration_stats_json_and_prometheus_elsewhere() -> None:
    async with sim_client(flavor="trt") as (client, _):
        await _stream(client, 7)
        assert (await client.get("/health")).status == 200
        stats = await client.get("/metrics")
        stats_body = await stats.json()
        prom = await (await client.get("/prometheus/metrics")).text()
        version = await (await client.get("/version")).json()
    assert stats.status == 200 and stats_body == []  # enable_iter_perf_stats is off
    assert 'trtllm_generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct",engine_type="trtllm"} 7' \
        in prom
    assert "trtllm_time_to_first_token_seconds_count" in prom and "vllm:" not in prom
    assert "sim:gpu_power_watts{" in prom
    assert version["flavor"] == "trt"


def test_sglang_health_is_503_while_starting_in_process() -> None:
    asyncio.run(_test_sglang_health_is_503_while_starting_in_process())


async def _test_sglang_health_is_503_while_starting_in_process() -> None:
    async with sim_client(flavor="sglang", startup_delay=0.3) as (client, server):
        assert not server.ready
        assert (await client.get("/health")).status == 503
        assert (await client.get("/health_generate")).status == 503
        for _ in range(100):
            if server.ready:
                break
            await asyncio.sleep(0.02)
        assert (await client.get("/health")).status == 200
        assert (await client.get("/health_generate")).status == 200


# --- readiness against a real sim process ------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readiness_waits_through_sglang_503_while_starting() -> None:
    """SGLang opens its port before it is ready and answers /health 503: wait_ready keeps polling."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = sim_command(["sim", "serve", "--flavor", "sglang", "--startup-delay", "2", "--port", str(port),
                       "--time-scale", "1000"], sys.executable)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline and proc.poll() is None:
            status, _ = http_get(f"{base}/health", 1.0)
            if status:
                break
            time.sleep(0.05)
        assert status == 503  # the port is open, the server is starting
        assert http_get(f"{base}/health_generate", 1.0)[0] == 503
        from infersweep.engines.readiness import health_path

        assert health_path("sglang") == "/health_generate" and health_path("vllm") == "/health"
        info = wait_ready(base, deadline_s=60, is_alive=lambda: proc.poll() is None, logs=lambda n: "",
                          poll_interval_s=0.2, health=health_path("sglang"))
        assert info.version is not None and info.version.startswith("sim-")
        assert info.version_info["flavor"] == "sglang" and info.models
        assert info.waited_s > 0.5
        with urllib.request.urlopen(f"{base}/health", timeout=5) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
