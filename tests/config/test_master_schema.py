"""The master-entry schema: the fields InferenceX master files use, including later additions."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from infersweep.config.master import MasterEntry, concurrencies, entry_problems, seq_len_name
from infersweep.config.schema_errors import validate_yaml

WORKER = {"num-worker": 1, "tp": 4, "ep": 4, "dp-attn": True, "additional-settings": ["CONFIG_FILE=x.yaml"]}


def base(**over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"image": "lmsysorg/sglang:v0.5.8", "model": "org/m", "model-prefix": "m",
                           "runner": "gb200", "precision": "fp4", "framework": "dynamo-sglang", "multinode": True,
                           "disagg": True}
    raw.update(over)
    return raw


def test_multinode_disagg_entry_with_later_fields() -> None:
    """prefill/decode pools, router, kv-p2p-transfer, hardware, batch-size, pp/dcp/pcp all validate."""
    raw = base(router={"name": "dynamo", "version": "0.8.1"}, **{"kv-p2p-transfer": "nixl"})
    raw["scenarios"] = {"fixed-seq-len": [{"isl": 8192, "osl": 1024, "search-space": [{
        "spec-decoding": "mtp", "conc-list": [180],
        "prefill": {**WORKER, "hardware": "gb200", "pp": 2, "pcp-size": 2},
        "decode": {"num-worker": 0, "tp": 8, "ep": 8, "dp-attn": False, "batch-size": 64, "max-num-tokens": 8192},
    }]}]}
    entry = validate_yaml(MasterEntry, raw)
    assert entry_problems(entry) == []
    point = entry.scenarios.fixed_seq_len[0].search_space[0]
    assert point.prefill is not None and point.prefill.additional_settings == ("CONFIG_FILE=x.yaml",)
    assert entry.router is not None and entry.router.version == "0.8.1"


def test_agentic_scenarios_single_and_multinode() -> None:
    """agentic-coding: duration, offloading, kv-offloading + backend, dram-utilization, tp or prefill/decode."""
    single = base(multinode=False, disagg=False, runner="b200")
    single["scenarios"] = {"agentic-coding": [{"duration": 1800, "dram-utilization": 0.5, "search-space": [
        {"tp": 8, "ep": 8, "offloading": "cpu", "conc-list": [1, 2, 4]},
        {"tp": 4, "kv-offloading": "dram", "kv-offload-backend": {"name": "lmcache"}, "conc-start": 1, "conc-end": 8},
    ]}]}
    entry = validate_yaml(MasterEntry, single)
    assert entry_problems(entry) == []
    assert [concurrencies(p) for p in entry.scenarios.agentic_coding[0].search_space] == [[1, 2, 4], [1, 2, 4, 8]]
    multi = base()
    multi["scenarios"] = {"agentic-coding": [{"search-space": [{"conc-list": [1], "prefill": WORKER, "decode": WORKER}]}]}
    assert entry_problems(validate_yaml(MasterEntry, multi)) == []


def test_agentic_point_needs_tp_or_both_pools() -> None:
    raw = base()
    raw["scenarios"] = {"agentic-coding": [{"search-space": [{"conc-list": [1], "prefill": WORKER}]}]}
    problems = entry_problems(validate_yaml(MasterEntry, raw))
    assert [p[1] for p in problems] == ["multinode point has no decode block"]


def test_multinode_point_rejects_point_level_tp() -> None:
    raw = base()
    raw["scenarios"] = {"fixed-seq-len": [{"isl": 1024, "osl": 1024, "search-space": [
        {"tp": 8, "conc-list": [1], "prefill": WORKER, "decode": WORKER}]}]}
    problems = entry_problems(validate_yaml(MasterEntry, raw))
    assert problems == [(("scenarios", "fixed-seq-len", 0, "search-space", 0, "tp"),
                         "tp is set per worker pool in multinode entries", "move tp into the prefill/decode blocks")]


def test_yaml_spellings_only() -> None:
    """Python attribute names are not accepted as YAML keys (model_prefix is not model-prefix)."""
    raw = base(multinode=False, disagg=False)
    raw["model_prefix"] = raw.pop("model-prefix")
    raw["scenarios"] = {"fixed-seq-len": [{"isl": 1, "osl": 1, "search-space": [{"tp": 1, "conc-list": [1]}]}]}
    with pytest.raises(ValidationError) as info:
        validate_yaml(MasterEntry, raw)
    assert {e["type"] for e in info.value.errors()} == {"missing", "extra_forbidden"}


@pytest.mark.parametrize("image", ["vllm/vllm-openai:v0.11.0", "nvcr.io/nvidia/x:1.0", "r:5000/img@sha256:" + "a" * 64,
                                   "localhost:5000/img:tag"])
def test_pinned_images_pass(image: str) -> None:
    raw = base(image=image, multinode=False, disagg=False)
    raw["scenarios"] = {"fixed-seq-len": [{"isl": 1, "osl": 1, "search-space": [{"tp": 1, "conc-list": [1]}]}]}
    assert validate_yaml(MasterEntry, raw).image == image


def test_untagged_image_behind_registry_port_is_rejected() -> None:
    """A ':' in the registry host is not a tag."""
    raw = base(image="localhost:5000/img", multinode=False, disagg=False)
    raw["scenarios"] = {"fixed-seq-len": [{"isl": 1, "osl": 1, "search-space": [{"tp": 1, "conc-list": [1]}]}]}
    with pytest.raises(ValidationError, match="has no tag"):
        validate_yaml(MasterEntry, raw)


def test_seq_len_names() -> None:
    assert (seq_len_name(1024, 1024), seq_len_name(8192, 1024), seq_len_name(1024, 8192)) == ("1k1k", "8k1k", "1024_8192")
