"""The fault-injection knobs the reliability suite relies on: `INFERSWEEP_SIM_FAULTS` selects servers and
accepts only fault flags; `--fault-once` fires a fault once (a transient crash) and then runs clean."""

from __future__ import annotations

import pytest

from infersweep.engines.base import EngineError
from infersweep.engines.sim.config import parse_sim_argv
from infersweep.engines.sim.server import _disarm_spent_faults, _mark_fault_fired
from infersweep.engines.sim_engine import fault_args
from infersweep.recipes.model import Recipe

pytestmark = pytest.mark.unit


def _recipe(tp: int, group: str = "g1") -> Recipe:
    return Recipe(image="vllm/vllm-openai:v0.11.0", model="meta-llama/Llama-3.1-8B-Instruct", serve_group=group,
                  argv=("vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct", "--tensor-parallel-size", str(tp)))


def test_selectors_pick_servers() -> None:
    spec = '{"tp=2": ["--die-after-requests", "9"], "g7": ["--startup-delay", "1"], "*": ["--fault-once", "/m"]}'
    assert fault_args(_recipe(2), spec) == ["--die-after-requests", "9", "--fault-once", "/m"]
    assert fault_args(_recipe(1, "g7"), spec) == ["--startup-delay", "1", "--fault-once", "/m"]
    assert fault_args(_recipe(4), "") == []


@pytest.mark.parametrize("spec", ['{"tp=2": ["--time-scale", "1000"]}', "not json", '["--fail-at-start"]'])
def test_only_fault_flags_in_valid_json(spec: str) -> None:
    with pytest.raises(EngineError, match="INFERSWEEP_SIM_FAULTS"):
        fault_args(_recipe(2), spec)


def test_fault_once_fires_then_runs_clean(tmp_path) -> None:
    marker = tmp_path / "fired"
    cfg = parse_sim_argv(["meta-llama/Llama-3.1-8B-Instruct", "--die-after-requests", "3",
                          "--fault-once", str(marker)])
    assert _disarm_spent_faults(cfg).die_after_requests == 3  # armed while the marker is absent
    _mark_fault_fired(cfg)
    assert marker.exists()
    clean = _disarm_spent_faults(cfg)
    assert clean.die_after_requests is None and clean.fail_at_start is None
