"""Shared helpers for the recipe and preflight tests: the shipped quirks table and a ServeGroup factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from infersweep.config.quirks import ModelQuirks, resolve_quirks
from infersweep.plan.models import ServeGroup

ROOT = Path(__file__).resolve().parents[2]
MXFP8 = "MiniMaxAI/MiniMax-M3-MXFP8"
BF16 = "MiniMaxAI/MiniMax-M3"


def load_table() -> dict[str, ModelQuirks]:
    data = yaml.safe_load((ROOT / "configs" / "quirks.yaml").read_text())
    return {name: ModelQuirks.model_validate(raw) for name, raw in data.items()}


@pytest.fixture(scope="session")
def quirks_table() -> dict[str, ModelQuirks]:
    return load_table()


@pytest.fixture(scope="session")
def m3(quirks_table: dict[str, ModelQuirks]) -> ModelQuirks:
    """Quirks of the MXFP8 checkpoint, resolved as a sweep resolves them (model id refines the prefix)."""
    q = resolve_quirks(quirks_table, model_prefix="minimaxm3", model=MXFP8)
    assert q is not None
    return q


def make_group(**overrides: Any) -> ServeGroup:
    """A MiniMax-M3 vLLM serve group; any ServeGroup field can be overridden."""
    isl = overrides.get("isl", 1024)
    osl = overrides.get("osl", 1024)
    runner = overrides.get("runner", "h200")
    fields: dict[str, Any] = {
        "id": "test-group",
        "config_key": f"minimaxm3-fp8-{runner}-vllm",
        "image": "vllm/vllm-openai:minimax-m3",
        "model": MXFP8,
        "model_prefix": "minimaxm3",
        "precision": "fp8",
        "framework": "vllm",
        "runner": runner,
        "isl": isl,
        "osl": osl,
        "tp": 8,
        "max_model_len": isl + osl + 256,
        "exp_name": f"minimaxm3_{'8k1k' if isl == 8192 else '1k1k'}",
        "concs": (4,),
    }
    fields.update(overrides)
    return ServeGroup(**fields)
