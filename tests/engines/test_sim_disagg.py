"""Disaggregated serving on the simulator: the KV transfer model, role-separated batching, the offline
topology run, recipe translation for topology components, and a real 1 prefill + 2 decode + router group.

Assertions are on modelled (simulated-time) metrics, deterministic with noise off; never on wall speed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from infersweep.config.inventory import Node
from infersweep.engines.readiness import http_get
from infersweep.engines.sim.components import component_kind, component_sim_argv, engine_view
from infersweep.engines.sim.config import SimConfig, parse_sim_argv
from infersweep.engines.sim.core import SimCore
from infersweep.engines.sim.kv_transfer import LINK_GB_S, KvLink, KvTransferModel
from infersweep.engines.sim.offline import closed_loop_run, disagg_closed_loop_run, worker_model
from infersweep.engines.sim.profiles import get_gpu_profile, get_model_profile
from infersweep.engines.sim.roofline import Roofline, Topology
from infersweep.engines.sim.router import RouterConfig, parse_router_argv
from infersweep.engines.sim.scheduler import Scheduler, SchedulerConfig, SimRequest, kv_received
from infersweep.engines.sim_engine import COMPONENT_ENV, SimConfigError, SimulatedEngine, component_recipe
from infersweep.engines.topology import TopologyEngine, component_handles
from infersweep.recipes.model import Recipe
from infersweep.recipes.topology import Component, TopologyRecipe

pytestmark = pytest.mark.unit


def _kv(model: str = "llama-3.1-70b", gpu: str = "h100", engine: str = "nixl", link: str | None = None,
        **topo: int) -> KvTransferModel:
    rf = Roofline(get_model_profile(model), get_gpu_profile(gpu), Topology(**topo))
    return KvTransferModel.build(rf, gpu, engine=engine, link=link)


# --- the KV transfer model ---------------------------------------------------------------------------------

def test_kv_transfer_scales_with_prompt_length() -> None:
    kv = _kv(tp=4)
    assert kv.bytes_per_rank(2000) == pytest.approx(2 * kv.bytes_per_rank(1000))
    assert kv.wire_s(2000) == pytest.approx(2 * kv.wire_s(1000))
    assert kv.duration_s(8000) > kv.duration_s(1000) > kv.latency_s > 0
    # Llama-3.1-70B: 80 layers x 8 KV heads x 128 x (K, V) x 2 bytes = 327,680 B/token, 4 ranks share it.
    assert kv.bytes_per_rank(1) == pytest.approx(80 * 8 * 128 * 2 * 2 / 4)


def test_kv_transfer_splits_over_the_prefill_tp_ranks() -> None:
    # GQA: each rank holds and sends its heads' share (up to the KV head count, then replicated).
    t2, t4, t8, t16 = (_kv(tp=tp).bytes_per_rank(4096) for tp in (2, 4, 8, 16))
    assert t4 == pytest.approx(t2 / 2) and t8 == pytest.approx(t4 / 2)
    assert t16 == pytest.approx(t8)  # 8 KV heads: TP16 replicates them
    # MLA: the latent is replicated on every rank, each rank sends a full copy to its decode peer; it is still
    # far smaller per token than a GQA model's KV.
    m4, m8 = (_kv("deepseek-r1", "h200", tp=tp).bytes_per_rank(4096) for tp in (4, 8))
    assert m4 == pytest.approx(m8)
    ds, llama = get_model_profile("deepseek-r1"), get_model_profile("llama-3.1-70b")
    assert ds.kv_bytes_per_token(2.0) < llama.kv_bytes_per_token(2.0) / 4
    # Pipeline stages send their own layers.
    assert _kv(tp=4, pp=2).bytes_per_rank(4096) == pytest.approx(t4 / 2)


def test_kv_transfer_depends_on_link_and_engine() -> None:
    ib = _kv(tp=8)
    assert ib.link == "infiniband" and _kv(gpu="gb200", tp=4).link == "nvlink"
    nvl = _kv(tp=8, link="nvlink")
    assert nvl.wire_s(8192) == pytest.approx(ib.wire_s(8192) * LINK_GB_S["infiniband"] / LINK_GB_S["nvlink"])
    assert _kv(tp=8, link="ethernet").duration_s(8192) > ib.duration_s(8192)
    assert _kv(tp=8, engine="mooncake").duration_s(8192) > ib.duration_s(8192)  # lower achieved line rate
    fake = _kv(tp=8, engine="fake")
    assert fake.bytes_per_rank(8192) == 0 and fake.duration_s(8192) == 0
    with pytest.raises(ValueError, match="unknown KV transfer engine 'carrier-pigeon'"):
        _kv(engine="carrier-pigeon")
    with pytest.raises(ValueError, match="kv_transfer"):
        SimConfig(kv_transfer="carrier-pigeon")


def test_kv_link_queues_transfers_behind_each_other() -> None:
    kv = _kv(tp=8)
    link = KvLink(kv)
    first = link.send(1.0, 8192)
    second = link.send(1.0, 8192)  # ready at the same time: waits for the first one's wire time
    assert first == pytest.approx(1.0 + kv.duration_s(8192))
    assert second == pytest.approx(first + kv.wire_s(8192))
    later = link.send(10.0, 100)  # the link is free again
    assert later == pytest.approx(10.0 + kv.duration_s(100))
    assert link.transfers == 3 and link.bytes_total == pytest.approx(kv.bytes_per_rank(8192 * 2 + 100))


def test_aggregated_servers_model_no_transfer_and_keep_their_output() -> None:
    core = SimCore(SimConfig())
    assert core.cfg.role == "aggregated" and core.kv_link is None
    info = core.version_info()
    assert "role" not in info and "kv_transfer" not in info  # an aggregated /version is what it was
    prefill = SimCore(SimConfig(role="prefill", kv_transfer="mooncake", kv_link="roce"))
    assert prefill.kv_link is not None and prefill.version_info()["kv_transfer"]["engine"] == "mooncake"
    assert prefill.version_info()["kv_transfer"]["link"] == "roce"


def test_role_flags_parse() -> None:
    cfg = parse_sim_argv([])
    assert (cfg.role, cfg.kv_transfer, cfg.kv_link) == ("aggregated", "nixl", None)
    cfg = parse_sim_argv(["--role", "decode", "--kv-transfer", "mooncake", "--kv-link", "nvlink"])
    assert (cfg.role, cfg.kv_transfer, cfg.kv_link) == ("decode", "mooncake", "nvlink")
    # vLLM's own --kv-transfer-config is still accepted (and ignored) beside the sim's --kv-transfer.
    cfg = parse_sim_argv(["--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'])
    assert "kv_transfer_config" in cfg.ignored_flags


# --- role-separated batching -------------------------------------------------------------------------------

def _sched(**kw: int) -> Scheduler:
    rf = Roofline(get_model_profile("llama-3.1-8b"), get_gpu_profile("h100"), Topology())
    return Scheduler(SchedulerConfig(max_num_seqs=kw.get("max_num_seqs", 64), max_num_batched_tokens=2048,
                                     num_blocks=20_000), rf)


def test_prefill_worker_batches_only_prefills() -> None:
    sched = _sched()
    for i in range(6):
        sched.add(SimRequest(rid=i, prompt_len=1500, max_tokens=1, arrival=0.0))  # the router's prefill call
    scheduled = 0
    while sched.has_work:
        out = sched.step()
        assert out is not None
        # A request emits exactly one token (index 0) and is done: it never comes back to decode.
        assert all(i == 0 for i in out.emitted_index) and set(out.emitted) == set(out.finished)
        scheduled += out.num_scheduled_tokens
    assert scheduled == 6 * 1500  # every scheduled token was prompt work
    assert sched.prompt_tokens_total == 6 * 1500 and sched.generation_tokens_total == 6


def test_decode_worker_batches_only_decodes() -> None:
    sched = _sched()
    reqs = [kv_received(i, 1500, 20, 0.0) for i in range(6)]
    for r in reqs:
        sched.add(r)
    first = sched.step()
    assert first is not None
    # One token of compute per request (vLLM: the decode side recomputes the last prompt token), and the
    # admitting step emits each request's first token.
    assert first.num_scheduled_tokens == 6 and first.emitted_index == [0] * 6
    while sched.has_work:
        out = sched.step()
        assert out is not None
        assert out.num_scheduled_tokens == len(out.emitted)  # no prefill chunk: one token per sequence
    assert [r.num_output for r in reqs] == [20] * 6 and all(r.finish_reason == "length" for r in reqs)


def test_aggregated_batches_mix_prefill_and_decode() -> None:
    """The contrast: an aggregated engine runs decodes and prompt chunks in one step (the interference)."""
    sched = _sched()
    sched.add(SimRequest(rid=0, prompt_len=100, max_tokens=50, arrival=0.0))
    sched.step()
    sched.add(SimRequest(rid=1, prompt_len=1500, max_tokens=5, arrival=sched.clock))
    out = sched.step()
    assert out is not None and 0 in [r.rid for r in out.emitted]  # request 0 decoded …
    assert out.num_scheduled_tokens > len(out.emitted)  # … in a step carrying request 1's prompt


# --- the offline topology run ------------------------------------------------------------------------------

def _pools(isl: int, osl: int, n: int) -> tuple[Any, Any, list[tuple[int, int]]]:
    worker = worker_model(get_model_profile("deepseek-r1"), get_gpu_profile("h200"), Topology(tp=8))
    kv = KvTransferModel.build(worker.roofline, "h200", engine="nixl")
    return worker, kv, [(isl, osl)] * n


def test_disagg_at_concurrency_1_pays_the_transfer_in_ttft() -> None:
    worker, kv, lengths = _pools(8192, 64, 4)
    agg, _ = closed_loop_run(worker.roofline, worker.config, concurrency=1, lengths=lengths)
    dis, raw = disagg_closed_loop_run(worker, worker, kv, concurrency=1, lengths=lengths)
    assert dis.median_ttft_s > agg.median_ttft_s + kv.duration_s(8192)  # transfer + the decode's first step
    assert dis.median_tpot_s == pytest.approx(agg.median_tpot_s, rel=0.05)  # nothing to interfere with at C=1
    assert raw["output_lens"] == [64] * 4 and raw["input_lens"] == [8192] * 4 and raw["completed"] == 4


def test_disagg_1p2d_beats_aggregated_tpot_at_high_concurrency_with_long_prompts() -> None:
    """1P(TP8)+2D(TP8) on 24 GPUs against aggregated TP8 on 8 GPUs at the same client concurrency (the
    InferenceX comparison: same model and load, per-GPU throughput reported separately): decode workers free
    of prefill chunks give lower TPOT, i.e. higher interactivity."""
    worker, kv, lengths = _pools(8192, 256, 128)
    agg, _ = closed_loop_run(worker.roofline, worker.config, concurrency=64, lengths=lengths)
    dis, _ = disagg_closed_loop_run(worker, worker, kv, num_prefill=1, num_decode=2, concurrency=64,
                                    lengths=lengths)
    assert dis.median_tpot_s < 0.8 * agg.median_tpot_s
    assert dis.interactivity > agg.interactivity
    again, _ = disagg_closed_loop_run(worker, worker, kv, num_prefill=1, num_decode=2, concurrency=64,
                                      lengths=lengths)
    assert again == dis  # deterministic


def test_disagg_spreads_over_decode_workers_and_queues_on_the_link() -> None:
    worker, kv, lengths = _pools(8192, 32, 16)
    rr, _ = disagg_closed_loop_run(worker, worker, kv, num_decode=2, concurrency=16, lengths=lengths)
    ll, _ = disagg_closed_loop_run(worker, worker, kv, num_decode=2, concurrency=16, lengths=lengths,
                                   policy="least_loaded")
    assert rr.completed == ll.completed == 16
    slow = KvTransferModel.build(worker.roofline, "h200", engine="nixl", link="ethernet")
    slow_run, _ = disagg_closed_loop_run(worker, worker, slow, num_decode=2, concurrency=16, lengths=lengths)
    assert slow_run.median_ttft_s > rr.median_ttft_s  # a slower link shows in TTFT, not TPOT
    with pytest.raises(ValueError, match="policy"):
        disagg_closed_loop_run(worker, worker, kv, concurrency=1, lengths=lengths, policy="random")


# --- translating topology components -----------------------------------------------------------------------

MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def _recipe(argv: tuple[str, ...], framework: str, port: int = 8000, **kw: Any) -> Recipe:
    """A component recipe (ports are the topology engine's choice in the HTTP test)."""
    return Recipe(image="img", argv=argv, model=kw.pop("model", MODEL), port=port, framework=framework, **kw)


def _topology(workers: dict[str, tuple[str, Recipe, int]], router: Recipe, *, kv: str | None = "nixl",
              framework: str = "vllm-disagg") -> TopologyRecipe:
    comps = [Component(name=name, role=role, node_index=i, gpu_ids=tuple(range(gpus)), recipe=recipe)  # type: ignore[arg-type]
             for i, (name, (role, recipe, gpus)) in enumerate(workers.items())]
    comps.append(Component(name="router", role="router", node_index=0, recipe=router))
    return TopologyRecipe(framework=framework, components=tuple(comps), nodes=len(workers), kv_transfer=kv)


SGL_ROUTER = _recipe(("python3", "-m", "sglang_router.launch_router", "--pd-disaggregation", "--prefill",
                      "{url:prefill-0}", "--decode", "{url:decode-0}"), "sglang-disagg", port=30000)


def test_sglang_disagg_worker_translates_with_role_and_transfer() -> None:
    argv = ("python3", "-m", "sglang.launch_server", "--model-path", "deepseek-ai/DeepSeek-R1-0528", "--tp", "8",
            "--disaggregation-mode", "prefill", "--disaggregation-transfer-backend", "nixl",
            "--disaggregation-bootstrap-port", "8998", "--disaggregation-ib-device", "mlx5_0",
            "--attention-backend", "fa3", "--port", "30001")
    pre = _recipe(argv, "sglang-disagg", port=31001, model="deepseek-ai/DeepSeek-R1-0528")
    dec = _recipe((*argv[:7], "--disaggregation-mode", "decode"), "sglang-disagg", port=31002,
                  model="deepseek-ai/DeepSeek-R1-0528")
    topo = _topology({"prefill-0": ("prefill", pre, 8), "decode-0": ("decode", dec, 8)}, SGL_ROUTER, kv="mooncake",
                     framework="sglang-disagg")
    out = component_sim_argv(topo.components[0], topo, gpu_profile="h200", time_scale=10.0)
    cfg = parse_sim_argv(out[2:])
    assert out[:2] == ["sim", "serve"] and cfg.flavor == "sglang"
    assert (cfg.role, cfg.kv_transfer, cfg.tp, cfg.port, cfg.gpu_profile) == ("prefill", "mooncake", 8, 31001, "h200")
    assert not any(f.startswith("--disaggregation") for f in cfg.ignored_recipe_flags)  # dropped by the table
    assert "--attention-backend" in cfg.ignored_recipe_flags  # an unknown flag is listed, not guessed at
    dcfg = parse_sim_argv(component_sim_argv(topo.components[1], topo)[2:])
    assert (dcfg.role, dcfg.port, dcfg.tp) == ("decode", 31002, 8)
    router = component_sim_argv(topo.components[2], topo)
    assert router == ["sim", "router", "--port", "30000", "--prefill", "{url:prefill-0}", "--decode",
                      "{url:decode-0}", "--policy", "round_robin"]


def test_dynamo_and_sim_workers_translate() -> None:
    dyn = _recipe(("python3", "-m", "dynamo.vllm", "--model", MODEL, "--tensor-parallel-size", "2",
                   "--is-prefill-worker", "--connector", "nixl"), "dynamo-vllm", port=9001)
    assert engine_view(dyn).argv == ("vllm", "serve", "--model", MODEL, "--tensor-parallel-size", "2")
    sim = _recipe(("infersweep", "sim", "serve", MODEL, "--max-num-seqs", "64"), "vllm", port=9002)
    bare = _recipe(("vllm", "serve", MODEL), "vllm-disagg", port=9003)
    topo = _topology({"prefill-0": ("prefill", dyn, 2), "decode-0": ("decode", sim, 4), "decode-1": ("decode", bare, 2)},
                     SGL_ROUTER, kv=None)
    p = parse_sim_argv(component_sim_argv(topo.components[0], topo)[2:])
    assert (p.role, p.tp, p.kv_transfer, p.port) == ("prefill", 2, "nixl", 9001)  # nixl: the default engine
    d = parse_sim_argv(component_sim_argv(topo.components[1], topo, time_scale=5.0)[2:])
    assert (d.role, d.tp, d.max_num_seqs, d.time_scale, d.port) == ("decode", 4, 64, 5.0, 9002)  # TP = its GPUs
    b = parse_sim_argv(component_sim_argv(topo.components[2], topo)[2:])
    assert b.tp == 2
    router = component_sim_argv(topo.components[3], topo)
    assert router[router.index("--decode") + 1:] == ["{url:decode-0}", "--decode", "{url:decode-1}", "--policy",
                                                     "round_robin"]


def test_component_translation_refuses_what_it_cannot_run() -> None:
    tp2 = _recipe(("vllm", "serve", MODEL, "--tensor-parallel-size", "2"), "vllm-disagg", port=9001)
    topo = _topology({"prefill-0": ("prefill", tp2, 4), "decode-0": ("decode", tp2, 2)}, SGL_ROUTER)
    with pytest.raises(ValueError, match=r"runs on 2 GPU.*holds 4"):
        component_sim_argv(topo.components[0], topo)
    bad_kv = _topology({"prefill-0": ("prefill", tp2, 2), "decode-0": ("decode", tp2, 2)}, SGL_ROUTER,
                       kv="pigeon")
    with pytest.raises(ValueError, match="kv_transfer 'pigeon'"):
        component_sim_argv(bad_kv.components[0], bad_kv)
    with pytest.raises(ValueError, match="cannot run a 'tilert' worker"):
        engine_view(_recipe(("tilert", "serve"), "tilert"))
    with pytest.raises(SimConfigError, match="cannot run prefill-0 on the simulator"):
        component_recipe(topo.components[0], topo, topo.components[0].recipe)


def test_multinode_ranks_and_services_run_idle() -> None:
    """A Dynamo group: etcd/NATS and a worker's second rank need nothing from the sim but still run (idle);
    the head rank models the whole worker's GPUs; only the entry router becomes `sim router`."""
    dyn = ("python3", "-m", "dynamo.sglang", "--model-path", MODEL, "--tp", "16", "--disaggregation-mode", "decode",
           "--dist-init-addr", "10.0.0.2:5000", "--nnodes", "2", "--node-rank", "0", "--request-plane", "nats")
    svc = _recipe(("etcd", "--listen-client-urls", "http://0.0.0.0:2379"), "dynamo-sglang", port=2379)
    comps = (
        Component(name="etcd", role="router", node_index=0, recipe=svc),
        Component(name="prefill-0", role="prefill", node_index=0, gpu_ids=(0, 1),
                  recipe=_recipe((*dyn[:5], "--tp", "2", "--disaggregation-mode", "prefill"), "dynamo-sglang",
                                 port=9000)),
        Component(name="decode-0", role="decode", node_index=1, gpu_ids=tuple(range(8)),
                  recipe=_recipe(dyn, "dynamo-sglang", port=9001)),
        Component(name="decode-0.1", role="decode", node_index=2, gpu_ids=tuple(range(8)),
                  recipe=_recipe(dyn, "dynamo-sglang", port=9002)),
        Component(name="router", role="router", node_index=0,
                  recipe=_recipe(("python3", "-m", "dynamo.frontend", "--http-port=8000"), "dynamo-sglang",
                                 port=8000)),
    )
    topo = TopologyRecipe(framework="dynamo-sglang", components=comps, nodes=3, kv_transfer="nixl",
                          router={"name": "dynamo", "policy": "least_loaded"})
    kinds = {c.name: component_kind(c, topo) for c in comps}
    assert kinds == {"etcd": "idle", "prefill-0": "worker", "decode-0": "worker", "decode-0.1": "idle",
                     "router": "router"}
    assert component_sim_argv(comps[0], topo) == ["sim", "idle", "--port", "2379", "--name", "etcd"]
    head = parse_sim_argv(component_sim_argv(comps[2], topo)[2:])
    assert (head.flavor, head.role, head.tp, head.port) == ("sglang", "decode", 16, 9001)  # both nodes' GPUs
    assert not {"--dist-init-addr", "--nnodes", "--node-rank"} & set(head.ignored_recipe_flags)
    router = component_sim_argv(comps[4], topo)
    assert router[-2:] == ["--policy", "least_loaded"] and "{url:decode-0.1}" not in router
    translated = component_recipe(comps[3], topo, comps[3].recipe.with_port(9100))
    assert translated.argv[:3] == ("infersweep", "sim", "idle") and translated.port == 9100
    assert translated.env[COMPONENT_ENV] == "decode-0.1" and translated.framework == "sim"


def test_router_settings_validate() -> None:
    cfg = parse_router_argv(["--port", "9000", "--prefill", "http://127.0.0.1:9001/", "--decode",
                             "http://127.0.0.1:9002", "--decode", "http://127.0.0.1:9003", "--policy",
                             "least_loaded"])
    assert cfg.prefill == ("http://127.0.0.1:9001",) and len(cfg.decode) == 2 and cfg.policy == "least_loaded"
    with pytest.raises(ValueError, match="must start with http://"):
        RouterConfig(prefill=("127.0.0.1:9001",), decode=("http://x",))
    with pytest.raises(ValueError):
        RouterConfig(prefill=(), decode=("http://x",))


# --- a real group: 1 prefill + 2 decode workers + router, as processes on loopback -------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, body: dict[str, Any], timeout: float = 30.0) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


@pytest.mark.integration
def test_http_group_1p2d_routes_streams_and_fails_fast(tmp_path: Path) -> None:
    """The real path: `TopologyEngine` starts etcd (idle), 1 prefill + 2 decode workers and the router through
    `SimulatedEngine` with `component_recipe`, on free loopback ports."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    key = tmp_path / "key.jsonl"
    key.write_text(json.dumps({"question": "Janet has 3 ducks. How many legs?", "answer": "6"}) + "\n")
    # A slow link (100 GbE) and a long prompt make the transfer big enough to see in wall time at scale 1.
    worker = ("vllm", "serve", MODEL, "--tensor-parallel-size", "1", "--kv-transfer-config",
              '{"kv_connector":"NixlConnector","kv_role":"kv_both"}', "--kv-link", "ethernet")
    comps = [Component(name="etcd", role="router", node_index=0, recipe=_recipe(("etcd",), "vllm-disagg"))]
    comps += [Component(name=name, role=name.split("-")[0], node_index=i, gpu_ids=(0,),  # type: ignore[arg-type]
                        recipe=_recipe(worker, "vllm-disagg"))
              for i, name in enumerate(("prefill-0", "decode-0", "decode-1"))]
    comps.append(Component(name="router", role="router", node_index=0,
                           recipe=_recipe(("python3", "-m", "dynamo.frontend", "--http-port=8000"), "vllm-disagg")))
    topo = TopologyRecipe(framework="vllm-disagg", components=tuple(comps), nodes=3, kv_transfer="nixl",
                          serve_group="g-disagg")
    eng = SimulatedEngine(log_dir=tmp_path, poll_interval_s=0.1, time_scale=1.0, gpu_profile="h100",
                          extra_args=["--answer-key", str(key)])
    group = TopologyEngine(eng, topo, [Node(name=f"n{i}", runner="h100") for i in range(3)],
                           translate=component_recipe, port_for=lambda _node: _free_port())
    handle = None
    try:
        handle = group.start()
        group.wait_ready(handle, deadline_s=60)
        parts = {p.extra["component"]: p for p in component_handles(handle)}
        base = handle.base_url
        assert parts["router"].extra["argv"][3:5] == ["sim", "router"]
        assert parts["etcd"].extra["argv"][3:5] == ["sim", "idle"] and group.is_alive(handle)
        version = orjson.loads(http_get(base + "/version", 5)[1])
        assert version["role"] == "router" and len(version["router"]["decode"]) == 2
        assert version["workers"][parts["prefill-0"].base_url]["role"] == "prefill"

        # Non-streaming, exact length; the header carries the modelled transfer (unloaded: latency + wire).
        prompt = "hello " * 2000
        status, body, headers = _post(base + "/v1/completions", {"prompt": prompt, "max_tokens": 7,
                                                                  "ignore_eos": True})
        assert status == 200, body
        out = orjson.loads(body)
        assert out["usage"]["completion_tokens"] == 7 and out["choices"][0]["finish_reason"] == "length"
        prompt_tokens = out["usage"]["prompt_tokens"]
        kv = KvTransferModel.build(Roofline(get_model_profile("llama-3.1-8b"), get_gpu_profile("h100"), Topology()),
                                   "h100", link="ethernet")
        assert float(headers["x-infersweep-kv-transfer-s"]) == pytest.approx(kv.duration_s(prompt_tokens))

        # Streaming completion: one event per token, usage, [DONE]; TTFT (wall) is never below the modelled
        # transfer, since the prefill worker answers only once the KV has arrived (a lower bound, not a speed).
        t0 = time.perf_counter()
        req = urllib.request.Request(base + "/v1/completions", headers={"Content-Type": "application/json"},
                                     data=orjson.dumps({"prompt": prompt, "max_tokens": 9, "ignore_eos": True,
                                                        "stream": True, "stream_options": {"include_usage": True}}))
        with urllib.request.urlopen(req, timeout=30) as resp:
            first = resp.readline()
            ttft = time.perf_counter() - t0
            text = (first + resp.read()).decode()
        assert ttft >= kv.duration_s(prompt_tokens)
        events = [b[len("data: "):] for b in text.split("\n\n") if b.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [orjson.loads(e) for e in events[:-1]]
        assert sum(1 for c in chunks if c["choices"]) == 9
        assert chunks[-1]["usage"] == {"prompt_tokens": prompt_tokens, "completion_tokens": 9,
                                       "total_tokens": prompt_tokens + 9}

        # Chat, streaming: the role delta first, then exactly max_tokens content deltas.
        req = urllib.request.Request(base + "/v1/chat/completions", headers={"Content-Type": "application/json"},
                                     data=orjson.dumps({"messages": [{"role": "user", "content": "hi"}],
                                                        "max_tokens": 4, "ignore_eos": True, "stream": True}))
        with urllib.request.urlopen(req, timeout=30) as resp:
            chat = [orjson.loads(b[6:]) for b in resp.read().decode().split("\n\n") if b.startswith("data: {")]
        assert chat[0]["choices"][0]["delta"]["role"] == "assistant"
        assert sum(1 for c in chat if c["choices"][0]["delta"].get("content")) == 4

        # The answer key works through the router: the scripted reply, stopped at EOS.
        status, body, _ = _post(base + "/v1/completions", {
            "prompt": "Question: Janet has 3 ducks. How many legs?\nAnswer:", "max_tokens": 200})
        answer = orjson.loads(body)
        assert status == 200 and answer["choices"][0]["text"].endswith("#### 6")
        assert answer["choices"][0]["finish_reason"] == "stop"

        # max_tokens 1: the decode worker's first step is the whole answer.
        status, body, _ = _post(base + "/v1/completions", {"prompt": "hi", "max_tokens": 1})
        assert status == 200 and orjson.loads(body)["usage"]["completion_tokens"] == 1

        # Round robin spread the five requests over both decode workers; the prefill worker sent five transfers.
        per_decode = [_metric(http_get(parts[n].base_url + "/metrics", 5)[1].decode(), "vllm:request_success_total")
                      for n in ("decode-0", "decode-1")]
        assert sorted(per_decode) == [2, 3]
        pre_metrics = http_get(parts["prefill-0"].base_url + "/metrics", 5)[1].decode()
        assert _metric(pre_metrics, "sim:kv_transfers_total") == 5
        assert _metric(pre_metrics, "sim:kv_transfer_seconds_total") > 0

        # A request straight to a worker, without the router's handle, is refused with the reason.
        status, body, _ = _post(parts["decode-0"].base_url + "/v1/completions", {"prompt": "hi"})
        assert status == 400 and b"kv_transfer_params" in body

        # Kill decode-1: the router's /health turns red, and requests that need it fail at once with 502.
        dead = parts["decode-1"]
        os.kill(int(dead.extra["pid"]), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while http_get(base + "/health", 5)[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        status, body = http_get(base + "/health", 5)
        assert status == 503 and dead.base_url.encode() in body
        while group.is_alive(handle) and time.monotonic() < deadline:  # the kernel reaps it a moment later
            time.sleep(0.05)
        assert not group.is_alive(handle)
        codes = [_post(base + "/v1/completions", {"prompt": "hi", "max_tokens": 3}, timeout=20)[0] for _ in range(2)]
        assert sorted(codes) == [200, 502]
    finally:
        if handle is not None:
            group.stop(handle, grace_s=5)
