"""TopologyEngine: every component started through one backend, in order, and always all stopped."""

from __future__ import annotations

import pytest

from infersweep.config.inventory import Node
from infersweep.engines.base import Engine, EngineError, ServerHandle
from infersweep.engines.topology import TopologyEngine, component_handles, is_topology
from infersweep.recipes.model import Recipe
from infersweep.recipes.topology import Component, TopologyRecipe


class FakeEngine(Engine):
    """Records starts/stops; `fail_start`/`fail_stop` name components whose call raises."""

    name = "fake"

    def __init__(self, fail_start: str = "", fail_stop: str = "") -> None:
        self.started: list[tuple[str, str, tuple[str, ...]]] = []
        self.stopped: list[str] = []
        self.dead: set[str] = set()
        self.ready_calls = 0
        self.fail_start, self.fail_stop = fail_start, fail_stop

    def start(self, recipe: Recipe, node: Node | None = None) -> ServerHandle:
        name = recipe.argv[0]
        if name == self.fail_start:
            raise EngineError(f"{name} would not start")
        assert node is not None
        self.started.append((name, node.name, recipe.argv))
        return ServerHandle(base_url=f"http://{node.host}:{recipe.port}", id=name, log_path=None, backend="fake",
                            node=node.name)

    def wait_ready(self, handle: ServerHandle, deadline_s: float | None = None) -> None:
        self.ready_calls += 1
        handle.engine_version = "1.2.3"

    def is_alive(self, handle: ServerHandle) -> bool:
        return handle.id not in self.dead and handle.id not in self.stopped

    def logs(self, handle: ServerHandle, tail: int | None = None) -> str:
        return f"log of {handle.id}"

    def stop(self, handle: ServerHandle, grace_s: float = 30.0) -> str:
        self.stopped.append(handle.id)
        if handle.id == self.fail_stop:
            raise EngineError("docker went away")
        return f"log of {handle.id}"


def _recipe(*argv: str, port: int) -> Recipe:
    return Recipe(image="img", argv=argv, model="m", port=port)


def _topology() -> TopologyRecipe:
    return TopologyRecipe(
        framework="sglang", nodes=2, kv_transfer="nixl", serve_group="g1",
        components=(
            Component(name="prefill-0", role="prefill", node_index=0, gpu_ids=(0, 1), recipe=_recipe("prefill-0", port=30000)),
            Component(name="decode-0", role="decode", node_index=1, gpu_ids=(0, 1), recipe=_recipe("decode-0", port=30001)),
            Component(name="router", role="router", node_index=0,
                      recipe=_recipe("router", "--prefill", "{url:prefill-0}", "--decode", "{url:decode-0}",
                                     "--host", "{host:decode-0}", port=8000)),
        ))


NODES = [Node(name="n1", runner="h100", host="10.0.0.1"), Node(name="n2", runner="h100", host="10.0.0.2")]


def test_components_start_in_order_on_their_nodes_with_addresses_filled() -> None:
    inner = FakeEngine()
    handle = TopologyEngine(inner, _topology(), NODES).start()
    assert [(n, node) for n, node, _ in inner.started] == [("prefill-0", "n1"), ("decode-0", "n2"), ("router", "n1")]
    router_argv = inner.started[-1][2]
    assert router_argv == ("router", "--prefill", "http://10.0.0.1:30000", "--decode", "http://10.0.0.2:30001",
                           "--host", "10.0.0.2")
    assert handle.base_url == "http://10.0.0.1:8000" and is_topology(handle)
    assert [h.id for h in component_handles(handle)] == ["prefill-0", "decode-0", "router"]
    assert handle.extra["nodes"] == ["n1", "n2"]


def test_failed_start_stops_what_already_started() -> None:
    inner = FakeEngine(fail_start="router")
    with pytest.raises(EngineError, match="router would not start"):
        TopologyEngine(inner, _topology(), NODES).start()
    assert inner.stopped == ["decode-0", "prefill-0"]


def test_stop_tries_every_component_even_when_one_fails() -> None:
    inner = FakeEngine(fail_stop="decode-0")
    engine = TopologyEngine(inner, _topology(), NODES)
    handle = engine.start()
    with pytest.raises(EngineError, match="decode-0: docker went away"):
        engine.stop(handle)
    assert inner.stopped == ["router", "decode-0", "prefill-0"]


def test_one_dead_worker_is_a_dead_server_and_fails_readiness_at_once() -> None:
    inner = FakeEngine()
    engine = TopologyEngine(inner, _topology(), NODES)
    handle = engine.start()
    assert engine.is_alive(handle)
    inner.dead.add("decode-0")
    assert not engine.is_alive(handle)
    with pytest.raises(EngineError, match="died before ready: decode-0"):
        engine.wait_ready(handle, deadline_s=60)
    assert inner.ready_calls == 0
    assert "===== decode-0 (decode) on n2 =====" in engine.logs(handle)


def test_ready_records_the_entry_version() -> None:
    inner = FakeEngine()
    engine = TopologyEngine(inner, _topology(), NODES)
    handle = engine.start()
    engine.wait_ready(handle, deadline_s=5)
    assert handle.engine_version == "1.2.3"


def test_too_few_nodes_is_refused() -> None:
    with pytest.raises(EngineError, match="needs 2 node"):
        TopologyEngine(FakeEngine(), _topology(), NODES[:1]).start()


def test_unknown_placeholder_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="unknown component 'decode-9'"):
        TopologyRecipe(framework="x", nodes=1, entry="w", components=(
            Component(name="w", role="aggregated", node_index=0, recipe=_recipe("w", "{url:decode-9}", port=1)),))


def test_the_slurm_backend_is_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from infersweep.engines.factory import engine_for
    from infersweep.engines.slurm import SlurmEngine

    monkeypatch.setenv("INFERSWEEP_SLURM_CONF", "/etc/slurm/test.conf")
    monkeypatch.setenv("INFERSWEEP_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("INFERSWEEP_SLURM_SBATCH_ARGS", "--gpus-per-node=8 --exclusive")
    monkeypatch.setenv("INFERSWEEP_SLURM_LOG_DIR", str(tmp_path / "shared"))
    engine = engine_for("slurm", log_dir=tmp_path)
    assert isinstance(engine, SlurmEngine)
    assert engine.partition == "gpu" and engine.sbatch_args == ("--gpus-per-node=8", "--exclusive")
    assert str(engine.log_dir) == str(tmp_path / "shared")
