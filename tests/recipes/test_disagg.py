"""Multi-node disaggregated serve recipes: every supported multinode row of InferenceX 843c6254f builds, with
InferenceX's GPU counts, and four rows launch exactly what srt-slurm / server_sglang.sh would launch."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
import yaml

from infersweep.config.inventory import Node
from infersweep.config.sweep import Sweep, load_sweep
from infersweep.engines.docker import build_container_spec
from infersweep.plan.models import MultinodeJob
from infersweep.plan.planner import PlanFilters, expand
from infersweep.recipes.disagg import (
    FRAMEWORKS,
    build_topology,
    cli_args,
    config_file_of,
    gpus_per_node,
    pools_of,
    select_variant,
)
from infersweep.recipes.errors import RecipeError, UnsupportedFrameworkError
from infersweep.recipes.model import Recipe

pytestmark = pytest.mark.unit
MASTERS = ("nvidia-master.yaml", "amd-master.yaml")
PLACEHOLDER = re.compile(r"\{(url|host|port):")


@functools.cache
def _sweep(fixtures: Path) -> Sweep:
    return load_sweep([fixtures / m for m in MASTERS], runners=fixtures / "runners.yaml")


@pytest.fixture(scope="module")
def sweep(inferencex_today_dir: Path) -> Sweep:
    return _sweep(inferencex_today_dir)


@pytest.fixture(scope="module")
def rows(sweep: Sweep) -> list[MultinodeJob]:
    out = [r for r in expand(sweep, PlanFilters(multi_node=True)).multinode
           if r.scenario_type is None and r.framework in FRAMEWORKS]
    assert len(out) == 377  # 843c6254f fixed-seq-len multinode rows of the four supported frameworks
    return out


def _row(rows: list[MultinodeJob], key: str, **where: object) -> MultinodeJob:
    return next(r for r in rows if r.config_key == key and all(getattr(r, k) == v for k, v in where.items()))


def _addresses(topology) -> dict[str, tuple[str, int]]:  # type: ignore[no-untyped-def]
    return {c.name: (f"10.0.0.{c.node_index + 1}", c.recipe.port) for c in topology.components}


def test_every_supported_multinode_row_builds(rows: list[MultinodeJob], sweep: Sweep) -> None:
    seen = set()
    for row in rows:
        topology = build_topology(row, runners=sweep.runners)
        pools = pools_of(row, sweep.runners)
        seen.add(row.framework)
        # InferenceX's PREFILL_GPUS + DECODE_GPUS: num-worker x tp x pp x pcp per pool.
        expected = sum(w.num_worker * w.tp * w.pp * w.pcp_size for w in (row.prefill, row.decode))
        assert topology.gpus == expected == row.gpus, row.config_key
        assert topology.nodes == sum(p.nodes for p in pools)
        for component in topology.components:
            assert component.recipe.gpus == len(component.gpu_ids) == len(component.recipe.gpu_ids)
            assert component.recipe.host_network
            assert component.recipe.image == row.image
        per_node = {p.role: p.gpus_per_node for p in pools}
        by_node: dict[int, list[int]] = {}
        for component in topology.workers:
            ids = by_node.setdefault(component.node_index, [])
            assert not set(ids) & set(component.gpu_ids), (row.config_key, component.name)
            ids.extend(component.gpu_ids)
            assert max(component.gpu_ids) < per_node[component.role]
        # In start order, as engines/topology.py resolves them. A component may name only itself or components
        # started before it; its own address is its node's (host network), known before it starts.
        addresses: dict[str, tuple[str, int]] = {}
        for component in topology.components:
            addresses[component.name] = (f"10.0.0.{component.node_index + 1}", component.recipe.port)
            resolved = topology.resolve(component, addresses)
            for text in (*resolved.argv, *resolved.env.values()):
                assert not PLACEHOLDER.search(text), (row.config_key, component.name, text)
    assert seen == set(FRAMEWORKS)


def test_pools_gb200_has_four_gpus_per_node_and_aggregated_rows(rows: list[MultinodeJob], sweep: Sweep) -> None:
    # `gb200` has no runners.yaml hardware entry; cluster:gb200-nv (gpus-per-node: 4) is the same SKU.
    assert gpus_per_node("gb200", sweep.runners) == 4
    assert gpus_per_node("b200-multinode", sweep.runners) == 8
    agg = _row(rows, "dsv4-fp4-gb200-dynamo-vllm-mtp2")
    (pool,) = pools_of(agg, sweep.runners)
    assert pool.role == "aggregated" and pool.gpus == 8 and pool.nodes == 2
    topology = build_topology(agg, runners=sweep.runners)
    assert "--disaggregation-mode" not in topology.entry_component.recipe.argv
    assert [c.name for c in topology.workers] == ["aggregated-0", "aggregated-0.1"]


# Golden rows. Expected argv written out from the sources named in infersweep.recipes.disagg's docstring.
# qwen3.5-fp8-gb200-dynamo-sglang 8k1k: CONFIG_FILE=recipes/sglang/qwen3.5/gb200-fp8/8k1k/1p1d-tp4-tp4.yaml
# (InferenceX 843c6254f benchmarks/multi_node/srt-slurm-recipes/…, sglang_config.prefill l.70-88); the fixed part
# is srt-slurm c88ef731 src/srtctl/backends/sglang.py l.346-405 (module, --host 0.0.0.0, --port = 6100 first HTTP
# port of the node, --nccl-port = 17500 + sys_port - 7500, --disaggregation-mode, bootstrap port 7200 for
# prefill, --request-plane tcp), then the recipe's flags sorted by name (`_config_to_cli_args`, l.408-421), which
# keeps the recipe's own `disaggregation-mode: "prefill"` a second time, as srt-slurm does.
SGLANG_RECIPE_FLAGS = [
    "--attention-backend", "trtllm_mha", "--chunked-prefill-size", "16384", "--context-length", "16384",
    "--cuda-graph-max-bs", "1024", "--decode-log-interval", "1", "--disable-radix-cache",
]
SGLANG_RECIPE_FLAGS_2 = [
    "--kv-cache-dtype", "fp8_e4m3", "--mamba-ssm-dtype", "bfloat16", "--max-prefill-tokens", "16384",
    "--max-running-requests", "1024", "--mem-fraction-static", "0.8", "--moe-runner-backend", "flashinfer_trtllm",
    "--quantization", "fp8", "--stream-interval", "50", "--tensor-parallel-size", "4", "--trust-remote-code",
]
QWEN_FP8 = "Qwen/Qwen3.5-397B-A17B-FP8"


def test_golden_dynamo_sglang(rows: list[MultinodeJob], sweep: Sweep) -> None:
    row = _row(rows, "qwen3.5-fp8-gb200-dynamo-sglang", isl=8192)
    t = build_topology(row, runners=sweep.runners)
    assert [(c.name, c.role, c.node_index, c.gpu_ids) for c in t.components] == [
        ("nats", "router", 0, ()), ("etcd", "router", 0, ()), ("prefill-0", "prefill", 0, (0, 1, 2, 3)),
        ("decode-0", "decode", 1, (0, 1, 2, 3)), ("router", "router", 0, ())]
    prefill, decode = t.components[2].recipe, t.components[3].recipe
    assert prefill.argv == (
        "python3", "-m", "dynamo.sglang", "--model-path", QWEN_FP8, "--served-model-name", QWEN_FP8,
        "--host", "0.0.0.0", "--port", "6100", "--nccl-port", "17500", "--disaggregation-mode", "prefill",
        "--disaggregation-bootstrap-port", "7200", "--request-plane", "tcp", *SGLANG_RECIPE_FLAGS,
        "--disaggregation-mode", "prefill", *SGLANG_RECIPE_FLAGS_2)
    assert decode.argv == (
        "python3", "-m", "dynamo.sglang", "--model-path", QWEN_FP8, "--served-model-name", QWEN_FP8,
        "--host", "0.0.0.0", "--port", "6100", "--nccl-port", "17501", "--disaggregation-mode", "decode",
        "--request-plane", "tcp", *SGLANG_RECIPE_FLAGS, "--disaggregation-mode", "decode", *SGLANG_RECIPE_FLAGS_2)
    # worker_stage.py l.161-172 + the recipe's prefill_environment (l.31-46).
    assert prefill.env["ETCD_ENDPOINTS"] == "{url:etcd}" and prefill.env["DYN_SYSTEM_PORT"] == "7500"
    assert prefill.env["MC_FORCE_MNNVL"] == "1" and "SGLANG_HACK_SEQ_BOOTSTRAP_ROOM" not in prefill.env
    assert decode.env["SGLANG_HACK_SEQ_BOOTSTRAP_ROOM"] == "1" and decode.env["DYN_SYSTEM_PORT"] == "7501"
    # frontends/dynamo.py l.84-93.
    router = t.entry_component.recipe
    assert router.argv == ("python3", "-m", "dynamo.frontend", "--http-port=8000") and router.gpus == 0
    assert topology_resolved_env(t, "router")["NATS_SERVER"] == "nats://10.0.0.1:4222"
    assert prefill.components["srt-slurm-recipe"] == (
        "recipes/sglang/qwen3.5/gb200-fp8/8k1k/1p1d-tp4-tp4.yaml (SemiAnalysisAI/InferenceX@843c6254ff69)")
    assert prefill.components["dynamo"] == "46520ca59afe992fb5ef61b3197b2316f8df9b2b"
    assert prefill.framework == "sglang" and prefill.model == QWEN_FP8


def topology_resolved_env(t, name: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    component = next(c for c in t.components if c.name == name)
    return t.resolve(component, _addresses(t)).env


def test_golden_dynamo_vllm_dep8_across_two_gb200_nodes(rows: list[MultinodeJob], sweep: Sweep) -> None:
    # dsv4-fp4-gb200-dynamo-vllm: CONFIG_FILE=recipes/vllm/deepseek-v4/8k1k/disagg-gb200-low-latency.yaml
    # (vllm_config.prefill l.96-121: DEP8 = tp 1 x dp 8 on 2 GB200 nodes of 4). srt-slurm c88ef731
    # backends/vllm.py l.916-1063: dynamo.vllm, --disaggregation-mode, --device-ids (not CUDA_VISIBLE_DEVICES),
    # per_node DP (l.950-1002: --data-parallel-size-local 4, start rank 0 / 4, address = leader, rpc port 8400
    # from NodePortAllocator, --data-parallel-hybrid-lb), --request-plane tcp, then the sorted recipe flags (the
    # recipe's data-parallel-rpc-port 13345 is dropped: the allocator's port wins). backend.connector is null,
    # so no --kv-transfer-config is added beyond the recipe's own. (launch_gb200-nv.sh runs this row with srt-slurm
    # v1.0.31, whose default DP launch is per_gpu; the per_node form here runs the same DP ranks per node.)
    row = _row(rows, "dsv4-fp4-gb200-dynamo-vllm")
    t = build_topology(row, runners=sweep.runners)
    names = [c.name for c in t.components]
    assert names == ["nats", "etcd", "prefill-0", "prefill-0.1", "decode-0", "decode-0.1", "router"]
    assert t.nodes == 4 and t.gpus == 16
    model = "deepseek-ai/DeepSeek-V4-Pro"
    rest = ["--block-size", "256", "--data-parallel-size", "8", "--enable-expert-parallel", "--enable-sleep-mode",
            "--enforce-eager", "--gpu-memory-utilization", "0.8", "--kv-cache-dtype", "fp8",
            "--kv-transfer-config", '{"kv_connector": "NixlConnector", "kv_role": "kv_both"}',
            "--max-model-len", "16384", "--max-num-batched-tokens", "32768", "--max-num-seqs", "16",
            "--no-async-scheduling", "--no-disable-hybrid-kv-cache-manager", "--no-enable-flashinfer-autotune",
            "--no-enable-prefix-caching", "--numa-bind", "--offload-group-size", "3", "--offload-num-in-group", "1",
            "--offload-prefetch-step", "2", "--pipeline-parallel-size", "1", "--tensor-parallel-size", "1",
            "--tokenizer-mode", "deepseek_v4", "--trust-remote-code"]
    for rank, start in ((2, "0"), (3, "4")):
        assert t.components[rank].recipe.argv == (
            "python3", "-m", "dynamo.vllm", "--model", model, "--served-model-name", model,
            "--disaggregation-mode", "prefill", "--device-ids", "0,1,2,3", "--data-parallel-size-local", "4",
            "--data-parallel-start-rank", start, "--data-parallel-address", "{host:prefill-0}",
            "--data-parallel-rpc-port", "8400", "--data-parallel-hybrid-lb", "--request-plane", "tcp", *rest)
    # Decode TP8 spans two nodes: standard multi-node TP (l.1003-1020), rank 1 headless.
    decode1 = t.components[5].recipe.argv
    assert decode1[:15] == ("python3", "-m", "dynamo.vllm", "--model", model, "--served-model-name", model,
                            "--disaggregation-mode", "decode", "--device-ids", "0,1,2,3", "--master-addr",
                            "{host:decode-0}", "--nnodes", "2")
    assert decode1[15:20] == ("--node-rank", "1", "--headless", "--request-plane", "tcp")
    assert json.loads(decode1[decode1.index("--compilation-config") + 1]) == {"cudagraph_mode": "FULL_DECODE_ONLY",
                                                                            "mode": 0}
    # frontend.env of the recipe (l.57-58) reaches the frontend.
    assert t.entry_component.recipe.env["DYN_REQUEST_PLANE_CODEC"] == "msgpack"


def test_golden_dynamo_trt_engine_yaml_is_a_file(rows: list[MultinodeJob], sweep: Sweep) -> None:
    # qwen3.5-fp4-gb300-dynamo-trt: CONFIG_FILE=recipes/trtllm/qwen3.5/gb300-fp4/disagg/8k1k/stp/
    # ctx1dep2_gen13tp4_mtp0_c78.yaml; srt-slurm c88ef731 backends/trtllm.py l.195-278: numactl -m 0,1 on
    # gb200/gb300, trtllm-llmapi-launch, dynamo.trtllm --disaggregation-mode, --extra-engine-args <yaml>.
    row = _row(rows, "qwen3.5-fp4-gb300-dynamo-trt", kv_p2p_transfer="ucx")
    t = build_topology(row, runners=sweep.runners)
    assert t.nodes == 14 and t.gpus == 2 + 13 * 4
    prefill = next(c for c in t.components if c.name == "prefill-0").recipe
    model = "nvidia/Qwen3.5-397B-A17B-NVFP4"
    assert prefill.argv == (
        "mpirun", "-n", "2", "--oversubscribe", "--allow-run-as-root", "numactl", "-m", "0,1",
        "trtllm-llmapi-launch", "python3", "-m", "dynamo.trtllm", "--model-path", model, "--served-model-name", model,
        "--disaggregation-mode", "prefill", "--extra-engine-args", "/infersweep/config/trtllm_config_prefill.yaml",
        "--request-plane", "tcp")
    engine = yaml.safe_load(prefill.files["trtllm_config_prefill.yaml"])
    assert engine["tensor_parallel_size"] == 2 and engine["enable_attention_dp"] is True
    assert engine["cache_transceiver_config"] == {"max_tokens_in_buffer": 8192, "backend": "UCX"}
    assert prefill.env["TLLM_USE_FLASHINFER_GDN_PREFILL"] == "1"
    decode12 = next(c for c in t.components if c.name == "decode-12")
    assert decode12.node_index == 13 and decode12.gpu_ids == (0, 1, 2, 3)
    assert t.entry_component.recipe.env["DYN_TOKENIZER"] == "fastokens"
    assert prefill.components["dynamo"] == "1.3.0.dev20260708"


def test_golden_sglang_disagg_router_and_workers(rows: list[MultinodeJob], sweep: Sweep) -> None:
    # qwen3.5-fp8-mi355x-sglang-disagg 8k1k (1P TP4 + 1D TP8, mori). InferenceX 843c6254f
    # benchmarks/multi_node/amd_utils/server_sglang.sh l.735-745 / 1306-1313 (launch line), l.362-437
    # build_server_config (--tp-size, then models.yaml base_flags with the transfer backend moved last by
    # apply_kv_p2p_transfer_override l.347-360, then the mode flags l.252-290 from the no_dp sections of
    # amd_utils/models.yaml `Qwen3.5-397B-A17B-FP8`), router l.816-829.
    row = _row(rows, "qwen3.5-fp8-mi355x-sglang-disagg", isl=8192)
    t = build_topology(row, runners=sweep.runners)
    assert [c.name for c in t.components] == ["prefill-0", "decode-0", "router"]
    base = ("--decode-log-interval", "1000", "--log-level", "warning", "--watchdog-timeout", "3600",
            "--load-balance-method", "round_robin", "--kv-cache-dtype", "fp8_e4m3", "--attention-backend", "aiter",
            "--moe-dense-tp-size", "1", "--disaggregation-transfer-backend", "mori")
    graphs = tuple(str(i) for i in range(1, 129))  # cuda_graph_bs_range "1-128" → seq 1 128
    assert t.components[0].recipe.argv == (
        "python3", "-m", "sglang.launch_server", "--model-path", QWEN_FP8, "--disaggregation-mode", "prefill",
        "--host", "0.0.0.0", "--port", "8000", "--trust-remote-code", "--tp-size", "4", *base,
        "--mem-fraction-static", "0.8", "--max-running-requests", "128", "--chunked-prefill-size", "262144",
        "--cuda-graph-bs", *graphs, "--disable-radix-cache")
    assert t.components[1].recipe.argv == (
        "python3", "-m", "sglang.launch_server", "--model-path", QWEN_FP8, "--disaggregation-mode", "decode",
        "--host", "0.0.0.0", "--port", "8000", "--trust-remote-code", "--tp-size", "8", *base,
        "--mem-fraction-static", "0.85", "--max-running-requests", "128", "--cuda-graph-bs", *graphs,
        "--prefill-round-robin-balance")
    # The env prefix of the launch line (env.sh l.70-71, l.255-258 defaults). The row runs its eval on the same
    # server (run-eval), so the MoE input cap is unset (l.595-596); without it the cap is env.sh's 32768.
    assert row.run_eval
    assert t.components[1].recipe.env["SGLANG_MORI_NUM_MAX_DISPATCH_TOKENS_PER_RANK"] == "512"
    assert "SGLANG_MORI_MOE_MAX_INPUT_TOKENS" not in t.components[0].recipe.env
    bench_only = build_topology(row.model_copy(update={"run_eval": False}), runners=sweep.runners)
    assert bench_only.components[0].recipe.env["SGLANG_MORI_MOE_MAX_INPUT_TOKENS"] == "32768"
    router = t.resolve(t.entry_component, _addresses(t))
    assert router.argv == (
        "python", "-m", "sglang_router.launch_router", "--pd-disaggregation", "--port", "30000",
        "--policy", "random", "--prefill-policy", "random", "--decode-policy", "random",
        "--cb-timeout-duration-secs", "15", "--retry-max-retries", "3",
        "--prefill", "http://10.0.0.1:8000", "--decode", "http://10.0.0.2:8000")


def test_sglang_disagg_dep_row_with_eval(rows: list[MultinodeJob], sweep: Sweep) -> None:
    # dsr1-fp8-mi355x-sglang-disagg: 2P DEP8 + 1D DEP8, conc 1024/2048, run-eval (RUN_EVAL=true strips the fake
    # EP dispatch, l.592-596). DP+EP: --ep-size and --dp-size are the TP size (l.369-391); prefill DP chunk =
    # MORI_MAX_DISPATCH_TOKENS_PREFILL (8192) x TP; max-running-requests = the highest concurrency (l.211-249);
    # decode dispatch tokens per rank = 2048 / 8.
    row = _row(rows, "dsr1-fp8-mi355x-sglang-disagg")
    assert row.run_eval and max(row.conc) == 2048
    t = build_topology(row, runners=sweep.runners)
    assert [c.name for c in t.workers] == ["prefill-0", "prefill-1", "decode-0"]
    argv = next(c for c in t.components if c.name == "prefill-1").recipe.argv
    at = argv.index("--tp-size")
    assert argv[at:at + 6] == ("--tp-size", "8", "--ep-size", "8", "--dp-size", "8")
    assert "fake" not in argv and argv[argv.index("--moe-a2a-backend") + 1] == "mori"
    assert argv[argv.index("--chunked-prefill-size") + 1] == "65536"
    assert argv[argv.index("--max-running-requests") + 1] == "2048"
    assert argv[argv.index("--cuda-graph-bs"):argv.index("--cuda-graph-bs") + 4] == ("--cuda-graph-bs", "1", "2", "3")
    decode = next(c for c in t.components if c.name == "decode-0").recipe
    assert decode.env["SGLANG_MORI_NUM_MAX_DISPATCH_TOKENS_PER_RANK"] == "256"
    assert "SGLANG_MORI_MOE_MAX_INPUT_TOKENS" not in decode.env
    # Decode DP: cuda graphs 1..160 (models.yaml decode.dp), DP+EP running requests = the highest concurrency.
    assert decode.argv[decode.argv.index("--cuda-graph-bs") + 160] == "160"


def test_vendored_recipes_match_their_rows(rows: list[MultinodeJob], sweep: Sweep) -> None:
    """Every row's srt-slurm recipe is vendored (except the gb200 rows whose launcher clones a fork we cannot
    read), and its workers and parallelism are the row's: the recipe is the one InferenceX runs for that row."""
    unvendored = set()
    for row in rows:
        if row.framework == "sglang-disagg":
            continue
        t = build_topology(row, runners=sweep.runners)  # also checks resources.*_workers against the pools
        note = t.workers[0].recipe.components["srt-slurm-recipe"]
        if "not vendored" in note:
            unvendored.add((row.runner, row.framework))
            continue
        assert note.startswith(config_file_of(row) or "?") and "@" in note
        pools = {p.role: p for p in pools_of(row, sweep.runners)}
        for c in t.workers:
            pool = pools[c.role]
            if row.framework == "dynamo-trt":
                engine = yaml.safe_load(next(iter(c.recipe.files.values())))
                assert (engine["tensor_parallel_size"], engine.get("moe_expert_parallel_size", 1),
                        bool(engine.get("enable_attention_dp"))) == (pool.tp, pool.ep, pool.dp_attn), row.config_key
            elif row.framework == "dynamo-sglang":
                argv = list(c.recipe.argv)
                flag = next(f for f in ("--tensor-parallel-size", "--tp-size", "--tp") if f in argv)
                assert int(argv[argv.index(flag) + 1]) == pool.tp, (row.config_key, c.name)
    # launch_gb200-nv.sh clones cquil11/srt-slurm-nv (cam/sa-submission-q2-2026) for dsr1; no copy is readable here.
    assert unvendored == {("gb200", "dynamo-trt"), ("gb200", "dynamo-sglang")}


def test_unvendored_recipe_is_recorded_and_gets_parallelism_flags(rows: list[MultinodeJob], sweep: Sweep) -> None:
    row = _row(rows, "dsr1-fp4-gb200-dynamo-trt")
    t = build_topology(row, runners=sweep.runners)
    prefill = next(c for c in t.components if c.name == "prefill-0").recipe
    assert prefill.components["srt-slurm-recipe"].endswith("(not vendored: parallelism flags only)")
    engine = yaml.safe_load(prefill.files["trtllm_config_prefill.yaml"])
    assert engine == {"tensor_parallel_size": row.prefill.tp, "moe_expert_parallel_size": row.prefill.ep,
                      "pipeline_parallel_size": 1, "enable_attention_dp": row.prefill.dp_attn}
    sglang = build_topology(_row(rows, "dsr1-fp8-gb200-dynamo-sglang"), runners=sweep.runners)
    argv = list(next(c for c in sglang.components if c.name == "prefill-0").recipe.argv)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "8"
    assert argv[argv.index("--disaggregation-transfer-backend") + 1] == "nixl"


def test_zip_override_variant_is_the_one_the_row_names(rows: list[MultinodeJob], sweep: Sweep) -> None:
    # CONFIG_FILE=recipes/b200-fp4/8k1k.yaml:zip_override_stp_lowlat[0] (NVIDIA/srt-slurm a98738de, which
    # launch_b200-dgxc.sh checks out): base deep-merged with element 0 of every zip list (core/config.py).
    row = _row(rows, "dsr1-fp4-b200-dynamo-sglang", conc=(64, 128))
    assert config_file_of(row) == "recipes/b200-fp4/8k1k.yaml:zip_override_stp_lowlat[0]"
    t = build_topology(row, runners=sweep.runners)
    note = t.workers[0].recipe.components["srt-slurm-recipe"]
    assert note == "recipes/b200-fp4/8k1k.yaml:zip_override_stp_lowlat[0] (NVIDIA/srt-slurm@a98738de9b22)"
    assert [c.name for c in t.workers] == ["prefill-0", "decode-0"]


def test_select_variant_follows_srt_slurm() -> None:
    raw = {"base": {"name": "b", "resources": {"prefill_workers": 1, "decode_workers": 1}, "drop": 1},
           "override_x": {"resources": {"decode_workers": 3}, "drop": None},
           "zip_override_z": {"resources": {"prefill_workers": [1, 2], "decode_workers": [4]}}}
    assert select_variant(raw, "override_x") == {"name": "b", "resources": {"prefill_workers": 1, "decode_workers": 3}}
    assert select_variant(raw, "zip_override_z[1]")["resources"] == {"prefill_workers": 2, "decode_workers": 4}
    with pytest.raises(RecipeError, match="no variant"):
        select_variant(raw, "override_missing")


def test_unknown_framework_is_a_clear_error(rows: list[MultinodeJob]) -> None:
    row = rows[0].model_copy(update={"framework": "llmd-vllm"})
    with pytest.raises(UnsupportedFrameworkError) as err:
        build_topology(row)
    text = str(err.value)
    assert row.config_key in text and "llmd-vllm" in text
    assert all(name in text for name in FRAMEWORKS)


def test_cli_args_follow_srt_slurm() -> None:
    assert cli_args({"b_flag": True, "a": 1, "off": False, "none": None, "lst": [1, 2]}) == [
        "--a", "1", "--b-flag", "--lst", "1", "2"]


# -- Docker: a component's container gets its GPU ids and the node's network -----------------------------------

NODE = Node.model_validate({"name": "gb200-01", "runner": "gb200", "docker-url": "unix:///var/run/docker.sock",
                            "host": "10.0.0.11"})


def test_docker_pins_component_gpus_and_uses_host_network() -> None:
    recipe = Recipe(image="img", argv=("python3", "-m", "dynamo.sglang"), model="m", gpus=2, gpu_ids=(2, 3),
                    host_network=True, port=6132)
    spec = build_container_spec(recipe, NODE, run_id="r")
    assert spec.device_requests == ({"Driver": "", "Count": 0, "DeviceIDs": ["2", "3"], "Capabilities": [["gpu"]]},)
    assert spec.network_mode == "host" and spec.ports == {}
    assert spec.create_kwargs()["network_mode"] == "host"
    # A lease's device ids still win over the recipe's.
    assert build_container_spec(recipe, NODE, run_id="r", device_ids=["5"]).device_requests[0]["DeviceIDs"] == ["5"]


def test_placement_fields_leave_fingerprints_unchanged() -> None:
    base = Recipe(image="img", argv=("vllm", "serve", "m", "--port", "8888"), model="m", gpus=2)
    placed = base.model_copy(update={"gpu_ids": (4, 5), "host_network": True})
    # The value model.py computed for this recipe before gpu_ids/host_network existed (git HEAD 2026-12-05).
    assert base.fingerprint() == "749deaf1d6e2109deb82cae4348047990d57a9b0178d7fcd064e8621420211b9"
    assert placed.fingerprint() == base.fingerprint()


def test_components_on_one_node_get_distinct_container_names(rows: list[MultinodeJob], sweep: Sweep) -> None:
    # etcd, NATS, the router and prefill-0 share node 0, and the engine labels them with one serve group.
    t = build_topology(_row(rows, "qwen3.5-fp8-gb200-dynamo-sglang", isl=8192), runners=sweep.runners)
    names = {build_container_spec(c.recipe.model_copy(update={"serve_group": "g1"}), NODE, run_id="r").name
             for c in t.components}
    assert len(names) == len(t.components)
    plain = Recipe(image="img", argv=("vllm", "serve", "m"), model="m", serve_group="g1")
    assert build_container_spec(plain, NODE, run_id="r").name == "infersweep-g1-r-gb200-01"  # unchanged


def test_heterogeneous_pools_lease_their_own_runner_labels(rows: list[MultinodeJob], sweep: Sweep) -> None:
    # CONFIGS.md: a pool may name its GPU SKU (`hardware: b200` / `hardware: h100`); it then leases that label.
    row = _row(rows, "dsr1-fp8-h200-dynamo-trt")
    hetero = row.model_copy(update={"prefill": row.prefill.model_copy(update={"hardware": "b200"}),
                                    "decode": row.decode.model_copy(update={"hardware": "h200"})})
    prefill, decode = pools_of(hetero, sweep.runners)
    assert (prefill.runner, prefill.gpus_per_node) == ("b200", 8)
    assert (decode.runner, decode.hardware) == (row.runner, "h200")  # the row's own SKU: its own label
    with pytest.raises(RecipeError, match="no single runner label"):
        pools_of(hetero.model_copy(update={"prefill": row.prefill.model_copy(update={"hardware": "tpu7"})}),
                 sweep.runners)
