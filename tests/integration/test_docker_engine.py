"""DockerEngine against a real dockerd (Debian docker.io), serving the simulated engine in a container.

Nothing can be pulled here, so the image is `docker import`ed from a rootfs of empty dirs plus usr-merge
symlinks; the host's /usr, this Python installation, the venv and the repo are bind-mounted read-only, and the
container runs `infersweep sim serve`. The dockerd is private to the session (own socket, data root and exec
root under a short /tmp path) and is stopped and deleted at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infersweep.config.inventory import Node
from infersweep.engines.base import EngineError
from infersweep.engines.docker import LABEL_RUN_ID, DockerEngine, GpuRuntimeUnavailableError
from infersweep.engines.reaper import reap
from infersweep.recipes.model import Mount, Recipe
from infersweep.telemetry.gpu import SimMetricsSource, TelemetrySampler, source_for
from tests.procs import stop_process_groups

pytestmark = pytest.mark.integration

IMAGE = "infersweep-test/rootfs:1"
START_TIMEOUT_S = 60.0


def _dockerd_log_tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


@pytest.fixture(scope="session")
def dockerd() -> Iterator[str]:
    """A private dockerd for the session; yields its unix:// URL. Skips with the reason when it can't run."""
    exe = shutil.which("dockerd")
    if exe is None:
        pytest.skip("dockerd is not installed (Debian package docker.io; .ci/apt.txt lists it)")
    if os.geteuid() != 0:
        pytest.skip("dockerd needs root on this machine (rootless docker is not set up)")
    import docker

    root = Path(tempfile.mkdtemp(prefix="isd", dir="/tmp"))  # short: unix socket paths max out at 108 bytes
    sock = root / "d.sock"
    log_path = root / "dockerd.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [exe, "-H", f"unix://{sock}", "--data-root", str(root / "data"), "--pidfile", str(root / "d.pid"),
             "--exec-root", str(root / "ex")],
            stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"unix://{sock}"
    client = None
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.skip(f"dockerd exited with {proc.returncode} at start:\n{_dockerd_log_tail(log_path)}")
            if sock.exists():
                try:
                    client = docker.DockerClient(base_url=url, timeout=10)
                    client.ping()
                    break
                except Exception:
                    pass
            if time.monotonic() > deadline:
                pytest.skip(f"dockerd did not answer within {START_TIMEOUT_S:.0f} s:\n{_dockerd_log_tail(log_path)}")
            time.sleep(0.25)
        yield url
    finally:
        if client is not None:
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        _stop_process_group(proc)
        subprocess.run(["umount", "-R", str(root / "data")], capture_output=True, check=False, timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _stop_process_group(proc: subprocess.Popen) -> None:
    stop_process_groups([proc])


@pytest.fixture(scope="session")
def rootfs_image(dockerd: str) -> str:
    """`docker import` of a rootfs with only dirs and usr-merge symlinks (the host /usr is mounted at run)."""
    from tests.reliability.outages import import_rootfs

    return import_rootfs(dockerd, IMAGE)


def _python_mounts(repo_root: Path) -> tuple[Mount, ...]:
    """Read-only binds that make this interpreter, its venv and the (editable) package work in the container."""
    sources = ["/usr", sys.base_prefix, sys.prefix, str(repo_root)]
    mounts: list[Mount] = []
    for src in sources:
        if any(src == m.source or src.startswith(m.source.rstrip("/") + "/") for m in mounts):
            continue  # already inside an earlier mount
        mounts.append(Mount(source=src, target=src, read_only=True))
    return tuple(mounts)


@pytest.fixture
def node(dockerd: str) -> Node:
    return Node.model_validate({"name": "itest", "runner": "cpu", "docker-url": dockerd, "host": "127.0.0.1",
                                "gpus": 1})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[DockerEngine]:
    eng = DockerEngine(run_id=f"itest-{uuid.uuid4().hex[:8]}", publish_ip="127.0.0.1", host_port=0,
                       client_timeout_s=30, log_dir=tmp_path, hf_token="hf_itest_secret")
    yield eng
    eng.close()


def sim_recipe(repo_root: Path, image: str, *, gpus: int = 0, group: str = "itest-sim", extra: tuple = ()) -> Recipe:
    cli = Path(sys.prefix) / "bin" / "infersweep"
    if not cli.exists():
        pytest.skip(f"{cli} not found: the package is not installed in this environment")
    return Recipe(
        image=image, model="HuggingFaceTB/SmolLM2-135M", gpus=gpus, port=8000, serve_group=group,
        argv=(str(cli), "sim", "serve", "--host", "0.0.0.0", "--port", "8000", "--model-profile", "smollm2-135m",
              "--gpu-profile", "h100", "--time-scale", "10", *extra),
        env={"PYTHONDONTWRITEBYTECODE": "1"}, mounts=_python_mounts(repo_root), ready_timeout_s=120,
    )


def _containers(engine: DockerEngine, node: Node) -> list:
    return engine.client(node.docker_url).containers.list(all=True, filters={"label": f"{LABEL_RUN_ID}={engine.run_id}"})


def _stream_completion(base_url: str, model: str, max_tokens: int) -> tuple[str, dict]:
    body = json.dumps({"model": model, "prompt": "The capital of France is", "max_tokens": max_tokens,
                       "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"{base_url}/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    text, usage, done = "", {}, False
    with urllib.request.urlopen(req, timeout=60) as resp:
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            payload = line[6:]
            if payload == "[DONE]":
                done = True
                break
            event = json.loads(payload)
            for choice in event.get("choices", []):
                text += choice.get("text", "")
            usage = event.get("usage") or usage
    assert done, "stream ended without [DONE]"
    return text, usage


def test_serve_stream_stop_leaves_nothing(engine, node, rootfs_image, repo_root):
    recipe = sim_recipe(repo_root, rootfs_image)
    handle = engine.start(recipe, node)
    try:
        assert handle.image_digest and handle.image_digest.startswith("sha256:")
        assert handle.extra["spec"]["environment"]["HF_TOKEN"] == "***"  # the returned spec is redacted
        engine.wait_ready(handle, deadline_s=120)
        assert handle.engine_version and handle.engine_version.startswith("sim-")
        model = handle.extra["served_models"][0]
        text, usage = _stream_completion(handle.base_url, model, max_tokens=8)
        assert usage["completion_tokens"] == 8 and text
        assert len(_containers(engine, node)) == 1
        # Telemetry: the sim's modelled gauges through the published port (labelled simulated), and the
        # Docker path (nvidia-smi exec'd in the container), which has no nvidia-smi here: nulls with the reason.
        sim = TelemetrySampler(SimMetricsSource(handle.base_url)).sample_once()
        assert sim and all(s.simulated and s.power_w is not None for s in sim)
        with TelemetrySampler(source_for(handle), interval_s=0.2) as sampler:
            smi = sampler.sample_once()
        assert smi and all(s.power_w is None for s in smi)
        assert "nvidia-smi" in smi[0].null_reasons["power_w"]
    finally:
        logs = engine.stop(handle, grace_s=10)
    assert _containers(engine, node) == []
    assert "serving" in logs and "hf_itest_secret" not in logs
    assert engine.stop(handle, grace_s=10) == logs  # idempotent
    assert Path(handle.log_path).read_text() == logs
    # A teardown task in another process only has the handle: stop is a no-op that returns the saved log.
    other = DockerEngine(run_id=engine.run_id, log_dir=Path(handle.log_path).parent)
    try:
        assert other.stop(handle, grace_s=1) == logs
    finally:
        other.close()


def test_stop_half_started_container(engine, node, rootfs_image, repo_root):
    recipe = sim_recipe(repo_root, rootfs_image, group="itest-slow", extra=("--startup-delay", "300"))
    handle = engine.start(recipe, node)
    assert _containers(engine, node)[0].status in {"created", "running"}
    engine.stop(handle, grace_s=2)
    assert _containers(engine, node) == []


def test_dead_container_fails_fast_with_its_log(engine, node, rootfs_image):
    recipe = Recipe(image=rootfs_image, model="none", gpus=0, port=8000, serve_group="itest-dead",
                    mounts=(Mount(source="/usr", target="/usr", read_only=True),),
                    argv=("/bin/sh", "-c", "echo 'fatal: weights missing'; exit 3"))
    handles = []
    # Either start sees it gone already (Docker dropped the random port) or wait_ready sees it die: both fail
    # at once with the container's own last lines, not after the 600 s deadline.
    with pytest.raises(EngineError, match="exited") as info:
        handles.append(engine.start(recipe, node))
        engine.wait_ready(handles[0], deadline_s=600)
    assert "fatal: weights missing" in info.value.log_tail
    for h in handles:
        engine.stop(h, grace_s=1)
    assert _containers(engine, node) == []


def test_generated_config_files_are_in_the_container(engine, node, rootfs_image):
    """Recipe.files (e.g. TensorRT-LLM's LLM-API YAML) are in CONFIG_DIR before the server starts."""
    recipe = Recipe(image=rootfs_image, model="none", gpus=0, port=8000, serve_group="itest-files",
                    mounts=(Mount(source="/usr", target="/usr", read_only=True),),
                    files={"extra.yml": "stream_interval: 10\n"},
                    argv=("/bin/sh", "-c", "cat /infersweep/config/extra.yml; exit 3"))
    handles = []
    with pytest.raises(EngineError, match="exited") as info:
        handles.append(engine.start(recipe, node))
        engine.wait_ready(handles[0], deadline_s=600)
    assert "stream_interval: 10" in info.value.log_tail
    for h in handles:
        engine.stop(h, grace_s=1)
    assert _containers(engine, node) == []


def test_gpu_request_without_toolkit_is_node_misconfigured(engine, node, rootfs_image, repo_root):
    from infersweep.faults import classify

    recipe = sim_recipe(repo_root, rootfs_image, gpus=1, group="itest-gpu")
    with pytest.raises(GpuRuntimeUnavailableError) as info:
        engine.start(recipe, node)
    assert 'could not select device driver "" with capabilities: [[gpu]]' in str(info.value)
    fc = classify(info.value)
    assert (fc.kind, fc.transient) == ("node_misconfigured", False)
    assert _containers(engine, node) == []  # the created-but-unstartable container was removed


def test_reaper_removes_only_ended_runs(node, rootfs_image, repo_root, tmp_path):
    ended = DockerEngine(run_id="itest-ended", publish_ip="127.0.0.1", host_port=0, log_dir=tmp_path)
    live = DockerEngine(run_id="itest-live", publish_ip="127.0.0.1", host_port=0, log_dir=tmp_path)
    recipe = sim_recipe(repo_root, rootfs_image, group="itest-reap", extra=("--startup-delay", "300"))
    h_ended = ended.start(recipe, node)
    h_live = live.start(recipe.model_copy(update={"serve_group": "itest-reap-live"}), node)
    try:
        client = ended.client(node.docker_url)
        done = reap(client, lambda run_id: run_id != "itest-ended", node="itest", grace_s=1)
        assert [(r.run_id, r.removed) for r in done] == [("itest-ended", True)]
        assert _containers(ended, node) == [] and len(_containers(live, node)) == 1
    finally:
        live.stop(h_live, grace_s=1)
        ended.stop(h_ended, grace_s=1)
        ended.close()
        live.close()


def test_a_disaggregated_topology_runs_one_container_per_component(engine, dockerd, rootfs_image, repo_root):
    """TopologyEngine over DockerEngine: a Dynamo-SGLang 1P+1D group (as `recipes.disagg` builds it) runs as one
    container per component (etcd, NATS, prefill, decode, router) on its node, in the host network as
    InferenceX's containers do; the router serves through both workers; a dead worker is a dead server, and
    stop removes every container."""
    from infersweep.airflow.context import free_port
    from infersweep.config.master import WorkerConfig
    from infersweep.engines.sim.components import component_sim_argv
    from infersweep.engines.topology import TopologyEngine, component_handles
    from infersweep.plan.models import MultinodeJob
    from infersweep.recipes.disagg import build_topology

    cli = Path(sys.prefix) / "bin" / "infersweep"
    if not cli.exists():
        pytest.skip(f"{cli} not found: the package is not installed in this environment")
    pool = WorkerConfig.model_validate({"num-worker": 1, "tp": 8, "ep": 1, "dp-attn": False})
    job = MultinodeJob(config_key="llama-docker-pd", image=rootfs_image, model="meta-llama/Llama-3.1-8B-Instruct",
                       model_prefix="llama3.1-8b", precision="bf16", framework="dynamo-sglang", runner="cpu",
                       isl=1024, osl=64, prefill=pool, decode=pool, conc=(1,), max_model_len=1344,
                       exp_name="llama_1k", disagg=True, kv_p2p_transfer="nixl")
    topo = build_topology(job, served_model_name=job.model).model_copy(update={"serve_group": "itest-pd"})
    assert all(c.recipe.host_network for c in topo.components)

    def translate(comp, topology, recipe):
        # The container runs the simulator in the component's place (no GPU here: no devices are requested).
        argv = component_sim_argv(comp, topology, recipe=recipe, model_profile="llama-3.1-8b", gpu_profile="h100",
                                  time_scale=20.0)
        return recipe.model_copy(update={"argv": (str(cli), *argv), "gpus": 0, "gpu_ids": (),
                                         "mounts": _python_mounts(repo_root), "ready_timeout_s": 120,
                                         "env": {**recipe.env, "PYTHONDONTWRITEBYTECODE": "1"}})

    nodes = [Node.model_validate({"name": f"itest-{i}", "runner": "cpu", "docker-url": dockerd, "host": "127.0.0.1",
                                  "gpus": 8}) for i in range(topo.nodes)]
    topo_engine = TopologyEngine(engine, topo, nodes, translate=translate, port_for=lambda _n: free_port())
    handle = topo_engine.start()
    try:
        parts = component_handles(handle)
        assert sorted(p.extra["component"] for p in parts) == ["decode-0", "etcd", "nats", "prefill-0", "router"]
        assert {p.extra["component"]: p.node for p in parts}["decode-0"] == "itest-1"
        assert len(_containers(engine, nodes[0])) == 5  # one container per component
        topo_engine.wait_ready(handle, deadline_s=120)
        text, usage = _stream_completion(handle.base_url, job.model, max_tokens=8)
        assert usage["completion_tokens"] == 8 and text
        # A dead worker is a dead server.
        decode = next(p for p in parts if p.extra["component"] == "decode-0")
        engine.client(dockerd).containers.get(decode.id).kill()
        deadline = time.monotonic() + 30
        while topo_engine.is_alive(handle) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not topo_engine.is_alive(handle)
    finally:
        logs = topo_engine.stop(handle, grace_s=5)
    assert _containers(engine, nodes[0]) == []
    assert "===== prefill-0 (prefill) on itest-0 =====" in logs and "infersweep sim router" in logs
