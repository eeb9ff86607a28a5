"""How the local-process engine turns a recipe into a command, and the private temp dir it gives a server."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from infersweep.config.inventory import Node
from infersweep.engines.process import ProcessEngine, vllm_executable
from infersweep.recipes.model import Recipe


def _recipe(*argv: str) -> Recipe:
    return Recipe(image="vllm-cpu:0.32.0", argv=argv, model="m")


@pytest.mark.unit
def test_vllm_binary_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("INFERSWEEP_VLLM_BIN", raising=False)
    assert vllm_executable() == "vllm"
    monkeypatch.setenv("INFERSWEEP_VLLM_BIN", "/opt/venv/bin/vllm")
    argv = ProcessEngine(log_dir=tmp_path).command(_recipe("vllm", "serve", "m", "--port", "1234"), None)
    assert argv == ["/opt/venv/bin/vllm", "serve", "m", "--port", "1234", "--host", "127.0.0.1"]


@pytest.mark.unit
def test_host_is_the_nodes_unless_the_recipe_sets_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("INFERSWEEP_VLLM_BIN", raising=False)
    eng = ProcessEngine(log_dir=tmp_path)
    node = Node(name="ws", runner="cpu", host="10.0.0.5")
    assert eng.command(_recipe("vllm", "serve", "m"), node)[-2:] == ["--host", "10.0.0.5"]
    assert eng.command(_recipe("vllm", "serve", "m", "--host=::1"), node) == ["vllm", "serve", "m", "--host=::1"]
    # Anything that is not `vllm serve` runs exactly as written.
    assert eng.command(_recipe("python", "server.py"), node) == ["python", "server.py"]


@pytest.mark.integration
def test_server_gets_a_private_temp_dir_removed_on_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # vLLM leaves its ZMQ IPC sockets in TMPDIR / VLLM_RPC_BASE_PATH; both point at a dir `stop` removes.
    script = ("import os, time\n"
              "assert os.environ['TMPDIR'] == os.environ['VLLM_RPC_BASE_PATH']\n"
              "open(os.path.join(os.environ['TMPDIR'], 'sock'), 'w').close()\n"
              "print('ready', flush=True)\n"
              "time.sleep(60)\n")
    fake_vllm = tmp_path / "bin" / "vllm"  # any program named `vllm` run as `vllm serve`
    fake_vllm.parent.mkdir()
    fake_vllm.write_text(f"#!{sys.executable}\n{script}")
    fake_vllm.chmod(0o755)
    monkeypatch.setenv("INFERSWEEP_VLLM_BIN", str(fake_vllm))
    eng = ProcessEngine(log_dir=tmp_path)
    handle = eng.start(Recipe(image="x:1", argv=("vllm", "serve", "m"), model="m"))
    tmp = Path(handle.extra["tmp_dir"])
    try:
        deadline = time.monotonic() + 30
        while not (tmp / "sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp / "sock").exists() and tmp.name.startswith("isw-srv-")
    finally:
        eng.stop(handle, grace_s=5)
    assert not tmp.exists()
    eng.stop(handle)  # idempotent with the dir already gone
    # Other programs (the simulator, test servers) keep the caller's TMPDIR: nothing to create or remove.
    other = eng.start(Recipe(image="x:1", argv=(sys.executable, "-c", "pass"), model="m"))
    assert other.extra["tmp_dir"] is None
    eng.stop(other, grace_s=5)
