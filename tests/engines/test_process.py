"""The local-process backend and the simulated backend as real subprocesses (no process left behind)."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import urllib.request
from pathlib import Path

import orjson
import psutil
import pytest

from infersweep.engines.base import EngineError, ServerHandle
from infersweep.engines.process import ProcessEngine
from infersweep.engines.registry import get_engine
from infersweep.engines.sim_engine import SimulatedEngine
from infersweep.recipes.model import Recipe

pytestmark = pytest.mark.integration

# A vLLM-shaped server: /health, /v1/models, /version; it forks a worker child into its process group.
SERVER = textwrap.dedent('''
    import http.server, json, os, signal, subprocess, sys, time
    port, mode = int(sys.argv[1]), sys.argv[2]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("worker pid", child.pid, flush=True)
    if mode == "die":
        for i in range(1, 81):
            print(f"boot line {i}", flush=True)
        sys.exit(3)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = {"/health": {}, "/v1/models": {"data": [{"id": "fake"}]}, "/version": {"version": "9.9.9"}}.get(self.path)
            data = json.dumps(body).encode()
            self.send_response(200 if body is not None else 404); self.end_headers(); self.wfile.write(data)
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _group_gone(handle: ServerHandle) -> bool:
    try:
        os.killpg(int(handle.extra["pgid"]), 0)
    except ProcessLookupError:
        return True
    return all(p.status() == psutil.STATUS_ZOMBIE for p in psutil.process_iter()
               if _pgid(p.pid) == int(handle.extra["pgid"]))


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _recipe(tmp_path: Path, mode: str, port: int) -> Recipe:
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    return Recipe(image="none", argv=(sys.executable, str(script), str(port), mode), model="fake", port=port,
                  serve_group="g1")


def test_start_ready_stop_leaves_no_process(tmp_path: Path) -> None:
    eng = ProcessEngine(log_dir=tmp_path / "logs", poll_interval_s=0.2)
    handle = eng.start(_recipe(tmp_path, "serve", _free_port()))
    try:
        eng.wait_ready(handle, deadline_s=120)
        assert handle.engine_version == "9.9.9" and handle.extra["served_models"] == ["fake"]
        assert eng.is_alive(handle)
        assert "worker pid" in eng.logs(handle, tail=5)
    finally:
        text = eng.stop(handle, grace_s=10)
    assert "infersweep vllm-process" in text
    assert _group_gone(handle)
    assert eng.stop(handle) == text  # idempotent


def test_sigkill_after_grace_for_a_server_ignoring_sigterm(tmp_path: Path) -> None:
    eng = ProcessEngine(log_dir=tmp_path, poll_interval_s=0.2)
    handle = eng.start(_recipe(tmp_path, "stubborn", _free_port()))
    try:
        eng.wait_ready(handle, deadline_s=120)
    finally:
        eng.stop(handle, grace_s=0.5)
    assert handle.extra.get("killed") is True and _group_gone(handle)


def test_dying_server_fails_fast_quoting_its_log(tmp_path: Path) -> None:
    eng = ProcessEngine(log_dir=tmp_path, poll_interval_s=0.2)
    handle = eng.start(_recipe(tmp_path, "die", _free_port()))
    try:
        with pytest.raises(EngineError) as exc:
            eng.wait_ready(handle)  # default deadline: the recipe's 3600 s; it must not be waited out
        assert "exited before it was ready" in str(exc.value)
        assert "boot line 80" in exc.value.log_tail and "boot line 31" in exc.value.log_tail
        assert "boot line 30\n" not in exc.value.log_tail
    finally:
        eng.stop(handle, grace_s=2)  # the forked worker outlived its parent: stop must reap the group
    assert _group_gone(handle)


def test_stop_on_a_half_started_server_and_a_missing_binary(tmp_path: Path) -> None:
    eng = ProcessEngine(log_dir=tmp_path)
    handle = eng.start(_recipe(tmp_path, "serve", _free_port()))
    eng.stop(handle, grace_s=5)  # before readiness
    assert _group_gone(handle)
    with pytest.raises(EngineError, match="cannot start"):
        eng.start(Recipe(image="none", argv=("/nonexistent/vllm", "serve", "x"), model="x"))


def test_a_second_engine_instance_can_stop_the_server(tmp_path: Path) -> None:
    # Airflow: the serve task starts the server, the teardown task (another process) stops it.
    handle = ProcessEngine(log_dir=tmp_path).start(_recipe(tmp_path, "serve", _free_port()))
    other = ProcessEngine(log_dir=tmp_path, poll_interval_s=0.2)
    try:
        other.wait_ready(handle, deadline_s=120)
    finally:
        other.stop(handle, grace_s=10)
    assert _group_gone(handle)


def test_sim_engine_serves_a_vllm_recipe_end_to_end(tmp_path: Path) -> None:
    port = _free_port()
    recipe = Recipe(image="vllm/vllm-openai:v0.11.0", model="meta-llama/Llama-3.1-8B-Instruct", port=port,
                    argv=("vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--tensor-parallel-size", "1",
                          "--max-model-len", "4096", "--no-enable-prefix-caching", "--port", str(port)))
    eng = get_engine("sim", time_scale=100.0, log_dir=tmp_path, extra_args=("--no-merge-late-steps",))
    assert isinstance(eng, SimulatedEngine)
    handle = eng.start(recipe)
    try:
        eng.wait_ready(handle, deadline_s=120)
        assert handle.engine_version is not None and handle.engine_version.startswith("sim-")
        assert handle.extra["version_info"]["engine"] == "sim"
        req = urllib.request.Request(f"{handle.base_url}/v1/completions", data=orjson.dumps({
            "prompt": [1, 2, 3, 4], "max_tokens": 8, "stream": True, "ignore_eos": True,
            "stream_options": {"include_usage": True}}), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            events = [e for e in resp.read().decode().split("\n\n") if e]
        assert events[-1] == "data: [DONE]"
        assert orjson.loads(events[-2][6:])["usage"]["completion_tokens"] == 8
        assert len(events) == 8 + 2
    finally:
        eng.stop(handle, grace_s=10)
    assert _group_gone(handle)


def test_sim_kv_oom_flag_exits_with_vllms_message(tmp_path: Path) -> None:
    port = _free_port()
    recipe = Recipe(image="x", model="meta-llama/Llama-3.1-8B-Instruct", port=port,
                    argv=("vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"))
    eng = SimulatedEngine(log_dir=tmp_path, extra_args=("--fail-at-start", "kv-oom"))
    handle = eng.start(recipe)
    try:
        with pytest.raises(EngineError) as exc:
            eng.wait_ready(handle)
        assert "No available memory for the cache blocks. Try increasing `gpu_memory_utilization`" in exc.value.log_tail
    finally:
        eng.stop(handle, grace_s=5)
    assert handle.extra["exit_code"] == 1


def test_sim_dies_after_n_requests(tmp_path: Path) -> None:
    port = _free_port()
    recipe = Recipe(image="x", model="meta-llama/Llama-3.1-8B-Instruct", port=port,
                    argv=("vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"))
    eng = SimulatedEngine(log_dir=tmp_path, time_scale=100.0, extra_args=("--die-after-requests", "2",
                                                                                "--startup-delay", "0.5"))
    handle = eng.start(recipe)
    try:
        eng.wait_ready(handle, deadline_s=120)
        for _ in range(2):
            req = urllib.request.Request(f"{handle.base_url}/v1/completions",
                                         data=b'{"prompt":"hi","max_tokens":3}',
                                         headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(req, timeout=30).read()
            except OSError:
                pass  # the second reply may be cut by the crash
        proc = eng._procs[int(handle.id)]
        assert proc.wait(timeout=30) == 1
        assert "simulated crash" in eng.logs(handle)
        assert "start-up delay 0.5 s" in eng.logs(handle)
    finally:
        eng.stop(handle, grace_s=5)
    assert _group_gone(handle)


def test_registry_names() -> None:
    assert get_engine("vllm-process").name == "vllm-process"
    with pytest.raises(EngineError, match="unknown engine"):
        get_engine("tgi")
    try:
        docker = get_engine("vllm-docker")
    except EngineError as exc:  # the docker backend module is written separately; absent means unavailable
        assert "unavailable" in str(exc)
    else:
        assert type(docker).__name__ == "DockerEngine"
    with pytest.raises(EngineError, match="no model profile"):
        SimulatedEngine().start(Recipe(image="x", argv=("vllm", "serve", "org/unknown"), model="org/unknown"))
