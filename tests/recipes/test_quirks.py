"""configs/quirks.yaml validates, and the quirk matching/merging rules the recipes rely on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from infersweep.config.quirks import CudagraphOverride, GmuOverride, ModelQuirks, resolve_quirks

from .conftest import BF16, MXFP8


def test_shipped_quirks_validate_and_carry_the_seed_quirks(quirks_table) -> None:
    family = quirks_table["minimaxm3"]
    assert family.extra_serve_flags == ("--block-size", "128", "--language-model-only")
    assert family.stream_interval == 20
    mtp = family.spec_decoding["mtp"]
    assert (mtp.method, mtp.draft_model, mtp.num_speculative_tokens, mtp.attention_backend) == (
        "eagle3", "Inferact/MiniMax-M3-EAGLE3", 3, "FLASH_ATTN")
    assert quirks_table[MXFP8].checkpoint_bytes == 444_000_000_000
    assert quirks_table[BF16].checkpoint_bytes == 854_000_000_000


def test_model_id_entries_inherit_the_family_quirks(quirks_table) -> None:
    # quirks.yaml merges the family into each checkpoint entry, so a plain "model id first" lookup works too.
    for model in (MXFP8, BF16):
        assert quirks_table[model].extra_serve_flags == quirks_table["minimaxm3"].extra_serve_flags
        assert quirks_table[model].spec_decoding == quirks_table["minimaxm3"].spec_decoding


def test_shipped_quirks_load_through_the_sweep_loader(repo_root) -> None:
    from infersweep.config.sweep import load_sweep

    sweep = load_sweep([repo_root / "configs" / "minimaxm3-hopper.yaml"])
    q = sweep.quirks_for("minimaxm3", MXFP8)
    assert q is not None and q.checkpoint_bytes == 444_000_000_000 and q.stream_interval == 20


def test_resolve_quirks_refines_family_by_model_id() -> None:
    table = {
        "fam": ModelQuirks(stream_interval=5, gmu=0.8),
        "org/model": ModelQuirks(checkpoint_bytes=10, gmu=0.85),
    }
    q = resolve_quirks(table, model_prefix="fam", model="org/model")
    assert q is not None and (q.stream_interval, q.gmu, q.checkpoint_bytes) == (5, 0.85, 10)
    assert resolve_quirks(table, model_prefix="fam", model="org/other") == table["fam"]
    assert resolve_quirks(table, model_prefix="nope", model="org/model") == table["org/model"]
    assert resolve_quirks(table, model_prefix="nope", model="none") is None


def test_hardware_match_rules() -> None:
    o = GmuOverride(runner="h100*", gpu="H100", mode="dep", gmu=0.9)
    assert o.matches(runner="h100-dgxc", gpu="h100", mode="dep")
    assert not o.matches(runner="h100-dgxc", gpu="h100", mode="tep")
    assert not o.matches(runner="cluster:h100", gpu="h100", mode="dep")  # glob is anchored
    assert not GmuOverride(gpu="h100", gmu=0.9).matches(runner="x", gpu=None, mode="tp")
    assert GmuOverride(gmu=0.9).matches(runner="anything", gpu=None, mode="tp")


@pytest.mark.parametrize("raw", [
    {"gmu-overrides": [{"gpu": "h100", "gmu": 1.5}]},
    {"cudagraph-overrides": [{"bound": "per-rank"}]},
    {"cudagraph-overrides": [{"factor": 0}]},
    {"checkpoint-bytes": 0},
    {"kv-heads": 0},
    {"extra-flags": ["--x"]},
])
def test_bad_quirks_are_rejected(raw) -> None:
    with pytest.raises(ValidationError):
        ModelQuirks.model_validate(raw)


def test_cudagraph_override_defaults() -> None:
    o = CudagraphOverride.model_validate({"gpu": "h100", "mode": "dep"})
    assert (o.bound, o.factor) == ("per-dp-rank", 1)
