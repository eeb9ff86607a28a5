"""Serve recipes for InferenceX's disaggregated multi-node shapes: one component per worker rank, plus the router.

`pools_of` turns a multinode row's prefill/decode pools into `WorkerPool`s; `build_topology` gives every worker
rank (placed by `topology.place_pools`) the command the InferenceX/srt-slurm path launches, and adds the router
(and, for Dynamo, the etcd + NATS services its workers register with). `{host:NAME}`/`{url:NAME}` placeholders
are filled by the topology engine in start order: a component names only components started before it, or
itself (a multi-node worker's rank 0 is its own leader, as srt-slurm passes the leader's IP to every rank); a
host-network component's own address is its node's host, known before it starts.

Where the flags come from:
- dynamo-sglang / dynamo-vllm / dynamo-trt, the fixed part of each command: NVIDIA/srt-slurm main @ c88ef731
  (2026-08-21 20:37, the last commit before InferenceX 843c6254f): `src/srtctl/backends/{sglang,vllm,trtllm}.py`
  `build_worker_command` (+ `_config_to_cli_args`: flags sorted by name, `true` bare, lists spread),
  `src/srtctl/frontends/dynamo.py` (`python3 -m dynamo.frontend --http-port=8000` + frontend.args/env),
  `src/srtctl/cli/mixins/worker_stage.py` (worker env: ETCD_ENDPOINTS, NATS_SERVER, DYN_SYSTEM_PORT,
  DYN_REQUEST_PLANE, DYN_LOG), `src/srtctl/cli/setup_head.py` (etcd / nats-server argv), `src/srtctl/ports.py` and
  `core/topology.py` `NodePortAllocator` (ports), `core/config.py` (override / zip_override variants).
- the per-mode flags and env: the srt-slurm recipe the row's `CONFIG_FILE=` names, vendored verbatim under
  `recipes/data/srt_slurm/recipes/` from where the row's InferenceX launcher (`runners/launch_<runner>.sh` @
  843c6254f) takes it: InferenceX's own overlay `benchmarks/multi_node/srt-slurm-recipes/` (copied over the
  checkout), else NVIDIA/srt-slurm at the ref the launcher checks out (sa-submission-q2-2026 = deb1dfd9,
  a98738de for b200 dsr1-fp4 dynamo-sglang). `recipes/data/srt_slurm/SOURCES.yaml` names repo, commit and path
  of each file; the recipe's components record it.
- sglang-disagg: SemiAnalysisAI/InferenceX @ 843c6254f `benchmarks/multi_node/amd_utils/server_sglang.sh`
  (models.yaml lookup l.47-160, mode flags l.195-294, build_server_config l.362-437, transfer-backend override
  l.347-360, run-eval stripping l.592-596, launch lines l.735-745 / l.1306-1318, router l.810-829,
  HEADNODE_PORT=20000 l.18), `amd_utils/models.yaml` (vendored verbatim as `recipes/data/inferencex_amd/`),
  `amd_utils/env.sh` (the MoRI values the launch line reads, l.70-71, l.255-258, l.325-335) and
  `qwen3.5_fp8_mi355x_sglang-disagg.sh` (EP on iff ep > 1, DP iff dp-attn).

Gaps (each recorded in the recipe's components where it applies, so results never mix):
- 31 gb200 dsr1 rows: launch_gb200-nv.sh clones cquil11/srt-slurm-nv (cam/sa-submission-q2-2026), which is not
  readable here; those rows get only the parallelism flags their pools imply (tp/dp/ep/pp, transfer backend).
- The launchers pin different srt-slurm refs (v1.0.25 … v1.0.31, sa-submission-q2-2026, main); the command
  builder here is c88ef731's. Older refs differ in ports (sa-submission: DYN_SYSTEM_PORT from 8081) and, for
  dynamo-vllm DP, in the launch mode: before c88ef731 the default was per_gpu (one process per GPU with
  `--data-parallel-rank`); here one process per node runs its local DP ranks (`per_node`), the same ranks.
  Recipes that ask for per_gpu are marked `dp-launch`.
- Not reproduced: srt-slurm's `dynamo.install` (pip-installing Dynamo into an SGLang/vLLM image: the image must
  hold it; the version is in `components["dynamo"]`), `setup_script` (marked), `extra_mount`, multiple frontends
  behind nginx (one frontend here), `--dump-config-to`.
- TRT-LLM workers are MPI programs (srt-slurm: `srun --mpi=pmix --ntasks=<GPUs>` per worker). Here a worker's
  rank on one node runs under `mpirun -n <its GPUs>`; a TRT worker spanning nodes has no cross-container MPI
  launcher yet.
- sglang-disagg: env.sh's other exports (NCCL/RCCL/UCX/QoS tuning, detected per node), `--disaggregation-ib-device`
  (node RDMA devices), the DeepSeek-V4 synthetic-acceptance env and the local `MODEL_DIR` path (the HF id is used).
- etcd/NATS run from the job image (srt-slurm runs its own `/configs/etcd`, `/configs/nats-server` binaries);
  they are GPU-less components with role "router" until `topology.Role` has an infra role.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import yaml

from infersweep.config.runners import Runners
from infersweep.plan.groups import gpus_per_node, pools_of
from infersweep.plan.models import MultinodeJob
from infersweep.recipes.common import mount_hf_cache
from infersweep.recipes.errors import RecipeError, UnsupportedFrameworkError
from infersweep.recipes.hardware import gpu_for_runner
from infersweep.recipes.model import CONFIG_DIR, Recipe
from infersweep.recipes.topology import (
    Component,
    Placement,
    TopologyRecipe,
    WorkerPool,
    place_pools,
)

#: Frameworks `build_topology` builds, and the engine family each runs.
FRAMEWORKS: dict[str, str] = {
    "dynamo-sglang": "sglang", "dynamo-vllm": "vllm", "dynamo-trt": "trt", "sglang-disagg": "sglang",
}
#: Every process listens on all interfaces: workers and router run in host-network containers on their nodes.
LISTEN_HOST = "0.0.0.0"  # noqa: S104
READY_TIMEOUT_S = 3600.0

# srt-slurm src/srtctl/ports.py @ c88ef731.
ETCD_CLIENT_PORT = 2379
NATS_PORT = 4222
FRONTEND_PUBLIC_PORT = 8000
SGLANG_HTTP_PORT_BASE = 6100
SGLANG_HTTP_PORT_STRIDE = 32
SGLANG_BOOTSTRAP_PORT_BASE = 7200
SGLANG_DIST_INIT_PORT_BASE = 8300
SGLANG_NCCL_PORT_BASE = 17500
VLLM_DATA_PARALLEL_RPC_PORT = 8400
DYN_SYSTEM_PORT_BASE = 7500
#: srt-slurm DynamoConfig.request_plane default; worker_stage.py `_DEFAULT_WORKER_DYN_LOG`.
REQUEST_PLANE = "tcp"
DEFAULT_WORKER_DYN_LOG = "info,dynamo_runtime::pipeline::network::ingress::push_handler=warn"
#: srt-slurm VLLMProtocol.connector default (→ --kv-transfer-config), and its shorthand table.
VLLM_CONNECTORS: dict[str, dict[str, str]] = {
    "nixl": {"kv_connector": "NixlConnector", "kv_role": "kv_both"},
    "lmcache": {"kv_connector": "LMCacheConnectorV1", "kv_role": "kv_both"},
    "kvbm": {"kv_connector": "DynamoConnector", "kv_connector_module_path": "kvbm.vllm_integration.connector",
             "kv_role": "kv_both"},
}
# amd_utils/server_sglang.sh @ 843c6254f.
AMD_WORKER_PORT = 8000
AMD_HEADNODE_PORT = 20000
AMD_ROUTER_PORT = 30000
AMD_ROUTER_FLAGS = ("--policy", "random", "--prefill-policy", "random", "--decode-policy", "random",
                    "--cb-timeout-duration-secs", "15", "--retry-max-retries", "3")


def _where(job: MultinodeJob) -> str:
    return f"multinode row {job.config_key} ({job.framework}, isl={job.isl} osl={job.osl}, conc={list(job.conc)})"


# -- pools (plan.groups: the serve group and its recipe must agree on them) ----------------------------------

__all__ = ["FRAMEWORKS", "build_topology", "gpus_per_node", "pools_of"]


def config_file_of(job: MultinodeJob) -> str | None:
    """The srt-slurm recipe the row names (`CONFIG_FILE=` in either pool's additional-settings)."""
    for setting in (*job.prefill.additional_settings, *job.decode.additional_settings):
        key, _, value = setting.partition("=")
        if key == "CONFIG_FILE" and value:
            return value
    return None


@cache
def _data_file(*parts: str) -> Any:
    ref = resources.files("infersweep.recipes").joinpath("data", *parts)
    return yaml.safe_load(ref.read_text()) if ref.is_file() else None


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """srt-slurm core/config.py `deep_merge`: dicts merge, lists and scalars replace, None deletes."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _zip_slice(data: Mapping[str, Any], index: int) -> dict[str, Any]:
    """srt-slurm `_apply_zip_slice`: every list leaf → its index-th element (length-1 lists broadcast)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, list):
            out[key] = value[0 if len(value) == 1 else index]
        elif isinstance(value, Mapping):
            out[key] = _zip_slice(value, index)
        else:
            out[key] = value
    return out


def select_variant(raw: Mapping[str, Any], selector: str) -> dict[str, Any]:
    """srt-slurm `generate_override_configs` for one selector (`base`, `override_<x>`, `zip_override_<x>[i]`)."""
    if "base" not in raw:
        raise RecipeError(f"srt-slurm recipe has no `base:` for variant {selector!r}")
    base = raw["base"]
    if selector == "base":
        return copy.deepcopy(dict(base))
    m = re.fullmatch(r"(zip_override_[\w-]+)\[(\d+)\]", selector)
    if m:
        return _deep_merge(base, _zip_slice(raw[m.group(1)], int(m.group(2))))
    if selector.startswith("override_") and selector in raw:
        return _deep_merge(base, raw[selector])
    raise RecipeError(f"srt-slurm recipe has no variant {selector!r} (InferenceX runs one variant per row)")


def srt_recipe(job: MultinodeJob) -> tuple[dict[str, Any] | None, str]:
    """(the srt-slurm recipe the row runs, from `recipes/data/srt_slurm`, or None; the provenance note recorded in
    the recipe's components)."""
    config_file = config_file_of(job)
    if config_file is None:
        return None, "none (no CONFIG_FILE)"
    path, _, variant = config_file.partition(":")
    raw = _data_file("srt_slurm", *path.split("/"))
    if not isinstance(raw, dict):
        return None, f"{config_file} (not vendored: parallelism flags only)"
    data = select_variant(raw, variant) if variant else raw
    source = (_data_file("srt_slurm", "SOURCES.yaml") or {}).get(path) or {}
    where = f"{source.get('repo', '?')}@{str(source.get('commit', '?'))[:12]}"
    return data, f"{config_file} ({where})"


def _backend_mode(data: Mapping[str, Any] | None, key: str, mode: str,
                  generic: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(flag dict, env) of one worker mode of a srt-slurm recipe (`backend.<key>.<mode>`, `<mode>_environment`);
    without a vendored recipe, the `generic` flags the pool's parallelism implies and no env."""
    if data is None:
        return dict(generic), {}
    backend = data.get("backend") or {}
    section = "aggregated" if mode == "agg" else mode
    config = dict(((backend.get(key) or {}).get(section)) or {})
    env = {str(k): str(v) for k, v in (backend.get(f"{section}_environment") or {}).items()}
    return config, env


def cli_args(config: Mapping[str, Any]) -> list[str]:
    """srt-slurm's `_config_to_cli_args`: flags sorted by key, `_` → `-`, true bare, false/None dropped, lists spread."""
    args: list[str] = []
    for key, value in sorted(config.items()):
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            if value:
                args.append(flag)
        elif isinstance(value, list):
            args += [flag, *(str(v) for v in value)]
        elif value is not None:
            args += [flag, str(value)]
    return args


def _check_resources(job: MultinodeJob, data: Mapping[str, Any] | None, pools: tuple[WorkerPool, ...]) -> None:
    """A vendored recipe describes the same workers as the row (else it is the wrong recipe for it)."""
    backend_type = ((data or {}).get("backend") or {}).get("type")
    wanted = {"dynamo-sglang": "sglang", "dynamo-vllm": "vllm", "dynamo-trt": "trtllm"}.get(job.framework)
    if backend_type is not None and wanted is not None and backend_type != wanted:
        raise RecipeError(f"{_where(job)}: srt-slurm recipe {config_file_of(job)} is a {backend_type} recipe, "
                          f"not {wanted}")
    res = (data or {}).get("resources") or {}
    for pool in pools:
        key = "agg_workers" if pool.role == "aggregated" else f"{pool.role}_workers"
        if key in res and int(res[key]) != pool.num_worker:
            raise RecipeError(f"{_where(job)}: srt-slurm recipe {config_file_of(job)} has {key}={res[key]}, the "
                              f"row's {pool.role} pool has num-worker {pool.num_worker}")


# -- ports ---------------------------------------------------------------------------------------------------

class _Ports:
    """srt-slurm's NodePortAllocator: per-node HTTP (stride 32), bootstrap and DP-RPC ports; global system ports."""

    def __init__(self) -> None:
        self.http: dict[int, int] = {}
        self.bootstrap: dict[int, int] = {}
        self.dp_rpc: dict[int, int] = {}
        self.sys_port = DYN_SYSTEM_PORT_BASE

    @staticmethod
    def _next(table: dict[int, int], node: int, base: int, step: int = 1) -> int:
        port = table.get(node, base)
        table[node] = port + step
        return port

    def next_http(self, node: int) -> int:
        return self._next(self.http, node, SGLANG_HTTP_PORT_BASE, SGLANG_HTTP_PORT_STRIDE)

    def next_bootstrap(self, node: int) -> int:
        return self._next(self.bootstrap, node, SGLANG_BOOTSTRAP_PORT_BASE)

    def next_dp_rpc(self, node: int) -> int:
        return self._next(self.dp_rpc, node, VLLM_DATA_PARALLEL_RPC_PORT)

    def next_sys(self) -> int:
        port = self.sys_port
        self.sys_port += 1
        return port


# -- build ---------------------------------------------------------------------------------------------------

class _Ctx:
    """What every component builder of one topology shares."""

    def __init__(self, job: MultinodeJob, pools: tuple[WorkerPool, ...], served: str | None,
                 hf_cache: str | None) -> None:
        self.job = job
        self.pools = pools
        self.hf_cache = hf_cache
        self.data, self.recipe_note = srt_recipe(job)
        self.served = served or _recipe_served_name(self.data) or job.model
        dynamo = (self.data or {}).get("dynamo") or {}
        #: srt-slurm DynamoConfig.request_plane / event_plane (workers' --request-plane and DYN_* env).
        self.request_plane = str(dynamo.get("request_plane") or REQUEST_PLANE)
        self.event_plane = dynamo.get("event_plane")
        self.ports = _Ports()
        self.components = _components(job, self.recipe_note, self.data)
        #: Ports allocated once per worker (on its leader node) and shared by its ranks.
        self.per_worker: dict[tuple[str, str, int], int] = {}

    def recipe(self, argv: list[str], env: dict[str, str], *, gpu_ids: tuple[int, ...] = (), port: int,
               files: Mapping[str, str] | None = None, framework: str | None = None) -> Recipe:
        env = dict(env)
        mounts = mount_hf_cache(env, self.hf_cache)
        return Recipe(image=self.job.image, argv=tuple(argv), env=env, gpus=len(gpu_ids), gpu_ids=gpu_ids,
                      host_network=True, port=port, mounts=mounts,
                      model=self.job.model, served_model_name=self.served, ready_timeout_s=READY_TIMEOUT_S,
                      components=self.components, framework=framework or FRAMEWORKS[self.job.framework],
                      files=dict(files or {}))


def _recipe_served_name(data: Mapping[str, Any] | None) -> str | None:
    """srt-slurm `get_served_model_name`: the first `served-model-name` of prefill, aggregated, decode."""
    backend = (data or {}).get("backend") or {}
    for key in ("sglang_config", "vllm_config", "trtllm_config"):
        modes = backend.get(key) or {}
        for mode in ("prefill", "aggregated", "decode"):
            cfg = modes.get(mode) or {}
            name = cfg.get("served-model-name") or cfg.get("served_model_name")
            if name:
                return str(name)
    return None


def _components(job: MultinodeJob, recipe_note: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"topology": job.framework, "srt-slurm-recipe": recipe_note}
    if job.router is not None:
        out["router"] = job.router.model_dump(mode="json")
    if job.kv_p2p_transfer is not None:
        out["kv-p2p-transfer"] = job.kv_p2p_transfer
    backend = (data or {}).get("backend") or {}
    if backend.get("dp_launch_mode") == "per_gpu":
        # srt-slurm's per_gpu DP runs one process per GPU; a component is one process per node rank (per_node).
        out["dp-launch"] = "per_node (recipe: per_gpu)"
    if (data or {}).get("setup_script"):
        out["setup-script"] = f"{data['setup_script']} (not run)"  # type: ignore[index]
    dynamo = (data or {}).get("dynamo") or {}
    version = dynamo.get("version") or dynamo.get("wheel") or dynamo.get("hash")
    if version:
        out["dynamo"] = str(version)
    return out


def _mode(pool: WorkerPool) -> str:
    return "agg" if pool.role == "aggregated" else pool.role


def _head(p: Placement) -> str:
    """The component name of rank 0 of `p`'s worker (its leader)."""
    return f"{p.role}-{p.worker}"


def _dynamo_env(ctx: _Ctx, sys_port: int, mode_env: Mapping[str, str]) -> dict[str, str]:
    env = {
        "HEAD_NODE_IP": "{host:etcd}",
        "ETCD_ENDPOINTS": "{url:etcd}",
        "NATS_SERVER": "nats://{host:nats}:{port:nats}",
        "DYN_SYSTEM_PORT": str(sys_port),
        "DYN_REQUEST_PLANE": ctx.request_plane,
        "DYN_SKIP_SGLANG_LOG_FORMATTING": "1",
        **({"DYN_EVENT_PLANE": str(ctx.event_plane)} if ctx.event_plane else {}),
        "DYN_LOG": DEFAULT_WORKER_DYN_LOG,
    }
    env.update(mode_env)
    return env


def _generic_sglang(pool: WorkerPool, kv: str | None) -> dict[str, Any]:
    """Parallelism flags a pool implies, when its srt-slurm recipe is not vendored."""
    cfg: dict[str, Any] = {"tensor-parallel-size": pool.tp}
    if pool.dp_attn:
        cfg.update({"data-parallel-size": pool.tp, "enable-dp-attention": True})
    if pool.ep > 1:
        cfg["expert-parallel-size"] = pool.ep
    if pool.pp > 1:
        cfg["pipeline-parallel-size"] = pool.pp
    if kv and pool.role != "aggregated":
        cfg["disaggregation-transfer-backend"] = kv
    return cfg


def _dynamo_sglang(ctx: _Ctx, pool: WorkerPool, p: Placement, sys_port: int) -> Recipe:
    """srt-slurm backends/sglang.py `build_worker_command` (frontend_type dynamo)."""
    mode = _mode(pool)
    config, mode_env = _backend_mode(ctx.data, "sglang_config", mode, _generic_sglang(pool, ctx.job.kv_p2p_transfer))
    for key in ("model-path", "model_path", "served-model-name", "served_model_name", "nccl-port", "nccl_port"):
        config.pop(key, None)
    http_port = ctx.ports.next_http(p.node_index) if p.rank == 0 else 0
    argv = ["python3", "-m", "dynamo.sglang", "--model-path", ctx.job.model, "--served-model-name", ctx.served,
            "--host", LISTEN_HOST, "--port", str(http_port),
            "--nccl-port", str(SGLANG_NCCL_PORT_BASE + sys_port - DYN_SYSTEM_PORT_BASE)]
    if mode != "agg":
        argv += ["--disaggregation-mode", mode]
        if mode == "prefill":
            argv += ["--disaggregation-bootstrap-port", str(_bootstrap(ctx, p))]
    if p.ranks > 1:
        argv += ["--dist-init-addr", f"{{host:{_head(p)}}}:{SGLANG_DIST_INIT_PORT_BASE}", "--nnodes", str(p.ranks),
                 "--node-rank", str(p.rank)]
    argv += ["--request-plane", ctx.request_plane, *cli_args(config)]
    return ctx.recipe(argv, _dynamo_env(ctx, sys_port, mode_env), gpu_ids=p.gpu_ids, port=http_port or sys_port)


def _bootstrap(ctx: _Ctx, p: Placement) -> int:
    # One bootstrap port per prefill endpoint, allocated on its leader node and shared by its ranks.
    key = ("bootstrap", p.role, p.worker)
    if key not in ctx.per_worker:
        ctx.per_worker[key] = ctx.ports.next_bootstrap(p.node_index)
    return ctx.per_worker[key]


def _dp_rpc(ctx: _Ctx, p: Placement) -> int:
    key = ("dp_rpc", p.role, p.worker)
    if key not in ctx.per_worker:
        ctx.per_worker[key] = ctx.ports.next_dp_rpc(p.node_index)
    return ctx.per_worker[key]


def _generic_vllm(pool: WorkerPool) -> dict[str, Any]:
    cfg: dict[str, Any] = {"tensor-parallel-size": 1 if pool.dp_attn else pool.tp, "pipeline-parallel-size": pool.pp}
    if pool.dp_attn:
        cfg["data-parallel-size"] = pool.tp
    if pool.ep > 1 or pool.dp_attn:
        cfg["enable-expert-parallel"] = True
    return cfg


def _dynamo_vllm(ctx: _Ctx, pool: WorkerPool, p: Placement, sys_port: int) -> Recipe:
    """srt-slurm backends/vllm.py `build_worker_command` (frontend dynamo, dp_launch_mode per_node)."""
    mode = _mode(pool)
    config, mode_env = _backend_mode(ctx.data, "vllm_config", mode, _generic_vllm(pool))
    backend = (ctx.data or {}).get("backend") or {}
    config.pop("served-model-name", None)
    config.pop("served_model_name", None)
    argv = ["python3", "-m", "dynamo.vllm", "--model", ctx.job.model, "--served-model-name", ctx.served]
    if mode != "agg":
        argv += ["--disaggregation-mode", mode]
    connector = config.pop("connector", None)
    if connector is None:
        connector = backend.get("connector", "nixl") if "connector" in backend or ctx.data is not None else "nixl"
    if connector and str(connector).lower() not in ("null", "none"):
        preset = VLLM_CONNECTORS.get(str(connector).lower())
        argv += ["--kv-transfer-config", json.dumps(preset) if preset else str(connector)]
    # Docker exposes the component's GPUs renumbered from 0, so the in-container ids are 0..n-1.
    argv += ["--device-ids", ",".join(str(i) for i in range(len(p.gpu_ids)))]
    head = f"{{host:{_head(p)}}}"
    if config.get("data-parallel-size") is not None or config.get("data_parallel_size") is not None:
        for key in ("data-parallel-rpc-port", "data_parallel_rpc_port", "data-parallel-size-local",
                    "data_parallel_size_local", "data-parallel-start-rank", "data_parallel_start_rank",
                    "data-parallel-hybrid-lb", "data_parallel_hybrid_lb", "headless"):
            config.pop(key, None)
        replica = int(config.get("tensor-parallel-size") or 1) * int(config.get("pipeline-parallel-size") or 1)
        local = len(p.gpu_ids)
        rpc = str(_dp_rpc(ctx, p))
        if replica > local:
            argv += ["--master-addr", head, "--nnodes", str(p.ranks), "--node-rank", str(p.rank),
                     "--data-parallel-address", head, "--data-parallel-rpc-port", rpc]
            if p.rank > 0:
                argv.append("--headless")
        else:
            argv += ["--data-parallel-size-local", str(local // replica),
                     "--data-parallel-start-rank", str(p.rank * (local // replica)),
                     "--data-parallel-address", head, "--data-parallel-rpc-port", rpc, "--data-parallel-hybrid-lb"]
    elif p.ranks > 1:
        argv += ["--master-addr", head, "--nnodes", str(p.ranks), "--node-rank", str(p.rank)]
        if p.rank > 0:
            argv.append("--headless")
    argv += ["--request-plane", ctx.request_plane, *cli_args(config)]
    return ctx.recipe(argv, _dynamo_env(ctx, sys_port, mode_env), gpu_ids=p.gpu_ids, port=sys_port)


def _generic_trt(pool: WorkerPool) -> dict[str, Any]:
    return {"tensor_parallel_size": pool.tp, "moe_expert_parallel_size": pool.ep,
            "pipeline_parallel_size": pool.pp, "enable_attention_dp": pool.dp_attn}


def _dynamo_trt(ctx: _Ctx, pool: WorkerPool, p: Placement, sys_port: int) -> Recipe:
    """srt-slurm backends/trtllm.py `build_worker_command` (dynamo.trtllm path); the engine YAML is a file."""
    mode = _mode(pool)
    config, mode_env = _backend_mode(ctx.data, "trtllm_config", mode, _generic_trt(pool))
    backend = (ctx.data or {}).get("backend") or {}
    name = f"trtllm_config_{mode}.yaml"
    gpu = gpu_for_runner(pool.runner)
    numa = backend.get("numa_memory_bind")
    use_numactl = (gpu is not None and gpu.name in ("gb200", "gb300")) if numa is None else bool(numa)
    # srun --mpi=pmix --ntasks=<GPUs> on one node becomes mpirun with one task per GPU of this component.
    argv = ["mpirun", "-n", str(len(p.gpu_ids)), "--oversubscribe", "--allow-run-as-root"]
    if use_numactl and mode != "agg":
        argv += ["numactl", "-m", "0,1"]
    argv += ["trtllm-llmapi-launch", "python3", "-m", "dynamo.trtllm", "--model-path", ctx.job.model,
             "--served-model-name", ctx.served]
    if mode != "agg":
        argv += ["--disaggregation-mode", mode]
    argv += ["--extra-engine-args", f"{CONFIG_DIR}/{name}", "--request-plane", ctx.request_plane]
    if backend.get("publish_events_and_metrics"):
        argv.append("--publish-events-and-metrics")
    files = {name: yaml.safe_dump(config)}
    return ctx.recipe(argv, _dynamo_env(ctx, sys_port, mode_env), gpu_ids=p.gpu_ids, port=sys_port, files=files)


def _amd_models() -> dict[str, Any]:
    """InferenceX 843c6254f benchmarks/multi_node/amd_utils/models.yaml, vendored verbatim."""
    data = _data_file("inferencex_amd", "models.yaml")
    return data if isinstance(data, dict) else {}


def _setting(job: MultinodeJob, name: str) -> str | None:
    for setting in (*job.prefill.additional_settings, *job.decode.additional_settings):
        key, _, value = setting.partition("=")
        if key == name:
            return value
    return None


def _bash_bool(value: Any) -> bool:
    # The script prints Python values into bash and compares with "True" / "true".
    return str(value) in ("True", "true")


def _amd_model(job: MultinodeJob) -> tuple[str, dict[str, Any]]:
    """server_sglang.sh's models.yaml lookup: `<MODEL_NAME>-DI`, else `<MODEL_NAME>` (MODEL_NAME = repo basename)."""
    name = job.model.rsplit("/", 1)[-1]
    models = _amd_models()
    for key in (f"{name}-DI", name):
        if key in models:
            return name, models[key]
    raise RecipeError(f"{_where(job)}: model {name!r} is not in InferenceX amd_utils/models.yaml "
                      f"(keys: {', '.join(sorted(models))})")


class _AmdPlan:
    """server_sglang.sh l.47-300: the models.yaml entry resolved for this row into per-mode flags and env."""

    def __init__(self, job: MultinodeJob, pools: tuple[WorkerPool, ...]) -> None:
        self.name, m = _amd_model(job)
        by_role = {p.role: p for p in pools}
        prefill, decode = by_role.get("prefill"), by_role.get("decode")
        if prefill is None or decode is None:
            raise RecipeError(f"{_where(job)}: server_sglang.sh launches 1+ prefill and 1+ decode workers")
        self.mtp = int(_setting(job, "DECODE_MTP_SIZE") or 0)
        max_conc = max(job.conc)  # BENCH_MAX_CONC_VALUE
        dsv4 = self.name == "DeepSeek-V4-Pro"  # env.sh l.266-280
        dispatch_prefill, dispatch_decode = 8192, (64 if dsv4 else 512)  # env.sh l.255-256, l.332-333
        p_ep, p_dp = prefill.ep > 1, prefill.dp_attn  # qwen3.5_fp8_mi355x_sglang-disagg.sh l.37-47
        d_ep, d_dp = decode.ep > 1, decode.dp_attn
        pre, dec = m.get("prefill") or {}, m.get("decode") or {}
        env_ints = {"MORI_MAX_DISPATCH_TOKENS_PREFILL": dispatch_prefill, "MORI_MAX_DISPATCH_TOKENS_DECODE":
                    dispatch_decode, "PREFILL_TP_SIZE": prefill.tp, "DECODE_TP_SIZE": decode.tp}

        # Prefill (l.195-240, l.252-277).
        section = pre.get("dp" if p_dp else "no_dp") or {}
        if p_dp:
            graph_bs = str(section.get("cuda_graph_bs", "1 2 3")).split()
            running = section.get("max_running_requests", 24)
        else:
            start, stop = _range(section.get("cuda_graph_bs_range", "1-128"), 1, 128)
            graph_bs = [str(i) for i in range(start, stop + 1)]
            running = section.get("max_running_requests", 128)
        chunked = _formula(section.get("chunked_prefill_size", 262144), env_ints)
        context = section.get("context_length", "")
        total = section.get("max_total_tokens", "")
        two_batch = p_dp and _bash_bool(section.get("enable_two_batch_overlap", False))
        if p_dp and p_ep:
            running = max_conc
        flags = ["--mem-fraction-static", str(pre.get("mem_fraction_static", 0.8)), "--max-running-requests",
                 str(running), "--chunked-prefill-size", str(chunked)]
        flags += (["--disable-cuda-graph"] if _bash_bool(pre.get("disable_cuda_graph", False))
                  else ["--cuda-graph-bs", *graph_bs])
        if _bash_bool(pre.get("disable_radix_cache", True)):
            flags.append("--disable-radix-cache")
        if context != "":
            flags += ["--context-length", str(context)]
        if total != "":
            flags += ["--max-total-tokens", str(total)]
        if two_batch:
            flags.append("--enable-two-batch-overlap")
        prefill_context = context

        # Decode (l.218-251, l.279-294).
        if d_dp:
            section = dec.get("dp") or {}
            start, stop = _range(section.get("cuda_graph_bs_range", "1-160"), 1, 160)
            running = stop * decode.tp
        elif d_ep:
            section = dec.get("ep_only") or {}
            start, stop = _range(section.get("cuda_graph_bs_range", "1-256"), 1, 256)
            running = section.get("max_running_requests", 256)
        else:
            section = dec.get("no_dp") or {}
            start, stop = _range(section.get("cuda_graph_bs_range", "1-128"), 1, 128)
            running = section.get("max_running_requests", 128)
        context = section.get("context_length", "") or prefill_context
        if d_dp and d_ep:
            running = max_conc
            dispatch_decode = max_conc // decode.tp
        if self.mtp > 0:
            dispatch_decode *= self.mtp + 1
        dflags = ["--mem-fraction-static", str(dec.get("mem_fraction_static", 0.85)), "--max-running-requests",
                  str(running), "--cuda-graph-bs", *(str(i) for i in range(start, stop + 1))]
        if _bash_bool(dec.get("prefill_round_robin_balance", True)):
            dflags.append("--prefill-round-robin-balance")
        if context != "":
            dflags += ["--context-length", str(context)]
        if _bash_bool(dec.get("disagg_decode_enable_radix_cache", False)):
            dflags.append("--disaggregation-decode-enable-radix-cache")

        kv = job.kv_p2p_transfer
        self.config = {
            "prefill": _server_config(m, prefill.tp, p_ep, p_dp, self.mtp, flags, kv),
            "decode": _server_config(m, decode.tp, d_ep, d_dp, self.mtp, dflags, kv),
        }
        if job.run_eval:
            # l.592-596: an eval run drops the fake EP dispatch (it would corrupt answers) and the MoE input cap.
            for mode, args in self.config.items():
                self.config[mode] = _without_pair(args, "--ep-dispatch-algorithm", "fake")
        # The env the launch line sets in front of `python3 -m sglang.launch_server` (l.735, l.1306).
        combine = "auto" if dsv4 else ""
        self.env = {
            "prefill": {"SGLANG_MORI_COMBINE_DTYPE": combine, **({"MORI_ENABLE_SDMA": "true"} if two_batch else {}),
                        **({} if dsv4 else {"SGLANG_MORI_MOE_MAX_INPUT_TOKENS": "32768"}),
                        "SGLANG_MORI_NUM_MAX_DISPATCH_TOKENS_PER_RANK": "16384" if dsv4 else str(dispatch_prefill),
                        "MORI_IO_SQ_BACKOFF_TIMEOUT_US": "50000",
                        "MORI_IO_QP_MAX_SEND_WR": "32767" if dsv4 else "16384"},
            "decode": {"SGLANG_MORI_COMBINE_DTYPE": combine,
                       **({} if dsv4 else {"SGLANG_MORI_MOE_MAX_INPUT_TOKENS": "2703"}),
                       "SGLANG_MORI_NUM_MAX_DISPATCH_TOKENS_PER_RANK": "128" if dsv4 else str(dispatch_decode),
                       "MORI_IO_SQ_BACKOFF_TIMEOUT_US": "50000",
                       "MORI_IO_QP_MAX_SEND_WR": "32767" if dsv4 else "16384"},
        }
        if job.run_eval:
            for env in self.env.values():
                env.pop("SGLANG_MORI_MOE_MAX_INPUT_TOKENS", None)


def _without_pair(args: list[str], flag: str, value: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == flag and i + 1 < len(args) and args[i + 1] == value:
            i += 2
            continue
        out.append(args[i])
        i += 1
    return out


def _range(value: Any, default_start: int, default_end: int) -> tuple[int, int]:
    """models.yaml `cuda_graph_bs_range` "a-b" (expanded by `seq a b`)."""
    text = str(value)
    if "-" in text:
        start, _, stop = text.partition("-")
        return int(start), int(stop)
    return default_start, default_end


def _formula(value: Any, names: Mapping[str, int]) -> Any:
    """models.yaml `chunked_prefill_size`: an int, or a product of env names (`A * B`) as eval_formula computes."""
    if isinstance(value, (int, float)):
        return int(value)
    product = 1
    for factor in str(value).split("*"):
        factor = factor.strip()
        product *= int(factor) if factor.isdigit() else names[factor]
    return product


def _server_config(m: Mapping[str, Any], tp: int, ep: bool, dp: bool, mtp: int, mode_flags: list[str],
                   kv: str | None) -> list[str]:
    """build_server_config (l.362-437) + apply_kv_p2p_transfer_override (l.347-360): parallel args, base, EP, MTP,
    DP, then the mode's flags."""
    out = ["--tp-size", str(tp)]
    if ep:
        out += ["--ep-size", str(tp)]  # the script's ep_size is the TP size when EP is on
    if dp:
        out += ["--dp-size", str(tp)]
    base = str(m.get("base_flags", "")).split()
    if kv:
        cleaned: list[str] = []
        skip = False
        for arg in base:
            if skip:
                skip = False
            elif arg == "--disaggregation-transfer-backend":
                skip = True
            else:
                cleaned.append(arg)
        base = [*cleaned, "--disaggregation-transfer-backend", kv]
    out += base
    if ep:
        out += str(m.get("ep_flags", "")).split()
    if mtp > 0:
        out += [*str(m.get("mtp_flags", "")).split(), "--speculative-num-steps", str(mtp),
                "--speculative-num-draft-tokens", str(mtp + 1)]
    if dp:
        out += str(m.get("dp_flags", "")).split()
    return out + mode_flags


def _amd_sglang(ctx: _Ctx, pool: WorkerPool, p: Placement, slot: int, plan: _AmdPlan) -> Recipe:
    """amd_utils/server_sglang.sh: `python3 -m sglang.launch_server` per worker node rank."""
    mode = _mode(pool)
    port = AMD_WORKER_PORT + slot  # the script runs one worker per node (slot 0); packed workers need distinct ports
    argv = ["python3", "-m", "sglang.launch_server", "--model-path", ctx.job.model, "--disaggregation-mode", mode,
            "--host", LISTEN_HOST, "--port", str(port), "--trust-remote-code", *plan.config[mode]]
    if ctx.served != ctx.job.model:
        argv += ["--served-model-name", ctx.served]
    if p.ranks > 1:
        argv += ["--dist-init-addr", f"{{host:{_head(p)}}}:{AMD_HEADNODE_PORT}", "--nnodes", str(p.ranks),
                 "--node-rank", str(p.rank)]
    env = {"HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1", **plan.env[mode]}
    return ctx.recipe(argv, env, gpu_ids=p.gpu_ids, port=port)


def _infra(ctx: _Ctx) -> list[Component]:
    """NATS + etcd on the first node (srt-slurm setup_head.py), GPU-less, started before any worker.

    etcd must advertise a reachable address, and a component cannot name itself (its address is only known
    once it started): NATS starts first on the same node, so `{host:nats}` is etcd's own host."""
    nats = ctx.recipe(["nats-server", "-js", "-sd", "/tmp/nats"], {}, port=NATS_PORT)  # noqa: S108
    etcd = ctx.recipe(["etcd", "--data-dir", "/tmp/etcd", "--listen-client-urls",  # noqa: S108 (in-container path)
                       f"http://{LISTEN_HOST}:{ETCD_CLIENT_PORT}", "--advertise-client-urls",
                       f"http://{{host:nats}}:{ETCD_CLIENT_PORT}"], {}, port=ETCD_CLIENT_PORT)
    return [Component(name="nats", role="router", node_index=0, recipe=nats),
            Component(name="etcd", role="router", node_index=0, recipe=etcd)]


def _router(ctx: _Ctx, placements: list[Placement], port: int | None) -> Component:
    job = ctx.job
    if job.framework == "sglang-disagg":
        router_port = port or AMD_ROUTER_PORT
        argv = ["python", "-m", "sglang_router.launch_router", "--pd-disaggregation", "--port", str(router_port),
                *AMD_ROUTER_FLAGS]
        for role, flag in (("prefill", "--prefill"), ("decode", "--decode")):
            argv += [a for p in placements if p.role == role and p.rank == 0 for a in (flag, f"{{url:{p.name}}}")]
        recipe = ctx.recipe(argv , {}, port=router_port)
    else:
        router_port = port or FRONTEND_PUBLIC_PORT
        frontend = (ctx.data or {}).get("frontend") or {}
        argv = ["python3", "-m", "dynamo.frontend", f"--http-port={router_port}"]
        for key, value in (frontend.get("args") or {}).items():
            if value is True:
                argv.append(f"--{key}")
            elif value is not False and value is not None:
                argv += [f"--{key}", str(value)]
        env = {"ETCD_ENDPOINTS": "{url:etcd}", "NATS_SERVER": "nats://{host:nats}:{port:nats}",
               "DYN_REQUEST_PLANE": ctx.request_plane, "DYN_SKIP_SGLANG_LOG_FORMATTING": "1",
               **({"DYN_EVENT_PLANE": str(ctx.event_plane)} if ctx.event_plane else {})}
        env.update({str(k): str(v) for k, v in (frontend.get("env") or {}).items()})
        recipe = ctx.recipe(argv, env, port=router_port)
    return Component(name="router", role="router", node_index=0, recipe=recipe)


def build_topology(job: MultinodeJob, pools: tuple[WorkerPool, ...] | None = None, *,
                   served_model_name: str | None = None, port: int | None = None,
                   hf_cache: str | None = None, runners: Runners | None = None) -> TopologyRecipe:
    """The processes of `job`'s disaggregated (or multi-node aggregated) server, in start order.

    `pools` default to `pools_of(job, runners)`; `port` is the router's (default: srt-slurm's 8000 for Dynamo,
    server_sglang.sh's 30000 for sglang-disagg). Raises UnsupportedFrameworkError for other frameworks.
    """
    if job.framework not in FRAMEWORKS:
        raise UnsupportedFrameworkError(
            f"{_where(job)}: config key {job.config_key!r} has framework {job.framework!r}; multi-node serve "
            f"recipes exist for {', '.join(sorted(FRAMEWORKS))}")
    pools = pools if pools is not None else pools_of(job, runners)
    ctx = _Ctx(job, pools, served_model_name, hf_cache)
    _check_resources(job, ctx.data, pools)
    placements = place_pools(pools)
    by_role = {pool.role: pool for pool in pools}
    workers: list[Component] = []
    slots: dict[int, int] = {}
    amd = _AmdPlan(job, pools) if job.framework == "sglang-disagg" else None
    for p in placements:
        pool = by_role[p.role]
        if amd is not None:
            slot = slots.get(p.node_index, 0)
            slots[p.node_index] = slot + 1
            recipe = _amd_sglang(ctx, pool, p, slot, amd)
        else:
            sys_port = ctx.ports.next_sys()
            build = {"dynamo-sglang": _dynamo_sglang, "dynamo-vllm": _dynamo_vllm, "dynamo-trt": _dynamo_trt}
            recipe = build[job.framework](ctx, pool, p, sys_port)
        workers.append(Component(name=p.name, role=p.role, node_index=p.node_index, gpu_ids=p.gpu_ids,
                                 recipe=recipe))
    router = _router(ctx, placements, port)
    infra = [] if job.framework == "sglang-disagg" else _infra(ctx)
    # Dynamo: NATS/etcd first (workers register with them), workers, then the frontend; the sglang router
    # needs its workers' addresses, so it starts last too.
    return TopologyRecipe(
        framework=job.framework, components=(*infra, *workers, router), entry="router",
        nodes=sum(pool.nodes for pool in pools), kv_transfer=job.kv_p2p_transfer,
        router=job.router.model_dump(mode="json") if job.router is not None else None)
