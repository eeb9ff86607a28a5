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
    """prefill/decode pools, router, kv-p2p-transfer, hardware, pp/dcp/pcp all validate."""
    raw = base(router={"name": "dynamo", "version": "0.8.1"}, **{"kv-p2p-transfer": "nixl"})
    raw["scenarios"] = {"fixed-seq-len": [{"isl": 8192, "osl": 1024, "search-space": [{
        "spec-decoding": "mtp", "conc-list": [180],
        "prefill": {**WORKER, "hardware": "gb200", "pp": 2, "pcp-size": 2},
        "decode": {"num-worker": 0, "tp": 8, "ep": 8, "dp-attn": False, "hardware": "gb200", "dcp-size": 4},
    }]}]}
    entry = validate_yaml(MasterEntry, raw)
    assert entry_problems(entry) == []
    point = entry.scenarios.fixed_seq_len[0].search_space[0]
    assert point.prefill is not None and point.prefill.additional_settings == ("CONFIG_FILE=x.yaml",)
    assert entry.router is not None and entry.router.version == "0.8.1"


@pytest.mark.parametrize("key", ["batch-size", "max-num-tokens"])
def test_worker_fields_neither_upstream_schema_has_are_refused(key: str) -> None:
    """Accepting and then ignoring a key would be a silent drop: keys neither upstream version knows are refused."""
    raw = base()
    raw["scenarios"] = {"fixed-seq-len": [{"isl": 8192, "osl": 1024, "search-space": [{
        "conc-list": [1], "prefill": WORKER, "decode": {**WORKER, key: 64}}]}]}
    with pytest.raises(ValidationError) as info:
        validate_yaml(MasterEntry, raw)
    assert "extra_forbidden" in {e["type"] for e in info.value.errors()}


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


def _single(points: list[dict[str, Any]], *, agentic: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    raw = base(multinode=False, disagg=False, runner="b200", framework="sglang", **over)
    if agentic is not None:
        raw["scenarios"] = {"agentic-coding": [{**agentic, "search-space": points}]}
    else:
        raw["scenarios"] = {"fixed-seq-len": [{"isl": 1024, "osl": 1024, "search-space": points}]}
    return raw


LMCACHE = {"name": "lmcache", "version": "0.3.9"}
ROUTER = {"name": "vllm-router", "version": "0.1.14"}


@pytest.mark.parametrize(("raw", "want"), [
    (_single([{"tp": 4, "dcp-size": 3, "conc-list": [1]}]),
     (("scenarios", "fixed-seq-len", 0, "search-space", 0, "dcp-size"), "tp (4) must be divisible by dcp-size (3)")),
    (_single([{"tp": 4, "router": ROUTER, "conc-list": [1]}], router=ROUTER),
     (("scenarios", "fixed-seq-len", 0, "search-space", 0, "router"),
      "router is set at the top level and in this search-space entry")),
    (_single([{"tp": 8, "conc-list": [1]}], agentic={}),
     (("scenarios", "agentic-coding", 0, "search-space", 0), "single-node agentic point has no kv-offloading")),
    (_single([{"tp": 8, "kv-offloading": "none", "kv-offload-backend": LMCACHE, "conc-list": [1]}], agentic={}),
     (("scenarios", "agentic-coding", 0, "search-space", 0, "kv-offload-backend"),
      "kv-offload-backend needs kv-offloading: dram")),
    (_single([{"tp": 8, "kv-offloading": "dram", "conc-list": [1]}], agentic={"dram-utilization": 0.8}),
     (("scenarios", "agentic-coding", 0, "search-space", 0, "kv-offloading"),
      "kv-offloading: dram needs a kv-offload-backend")),
    (_single([{"tp": 8, "kv-offloading": "dram", "kv-offload-backend": LMCACHE, "conc-list": [1]}], agentic={}),
     (("scenarios", "agentic-coding", 0, "dram-utilization"), "kv-offloading: dram needs dram-utilization")),
    (_single([{"tp": 8, "offloading": "cpu", "kv-offloading": "none", "conc-list": [1]}], agentic={}),
     (("scenarios", "agentic-coding", 0, "search-space", 0, "offloading"),
      "offloading (June 2026 schema) cannot be combined with kv-offloading")),
], ids=["dcp-divides-tp", "router-twice", "agentic-needs-kv-offloading", "backend-needs-dram", "dram-needs-backend",
        "dram-needs-utilization", "legacy-and-new-offloading"])
def test_upstream_cross_field_rules(raw: dict[str, Any], want: tuple[tuple[Any, ...], str]) -> None:
    """The rules of upstream's validation.py (843c6254f) that pydantic cannot express per field."""
    problems = entry_problems(validate_yaml(MasterEntry, raw))
    assert [(path, message) for path, message, _fix in problems] == [want]
    assert all(fix for _path, _message, fix in problems)


def test_multinode_rules_hardware_pair_and_agentic_pool_fields() -> None:
    raw = base()
    raw["scenarios"] = {"agentic-coding": [{"search-space": [{
        "conc-list": [1], "pp": 2, "prefill": {**WORKER, "hardware": "gb200"}, "decode": WORKER}]}]}
    messages = [m for _p, m, _f in entry_problems(validate_yaml(MasterEntry, raw))]
    assert messages == ["hardware is set on one pool only", "pp is set per worker pool in multinode entries"]


def test_component_version_is_not_an_image() -> None:
    with pytest.raises(ValidationError) as info:
        validate_yaml(MasterEntry, _single([{"tp": 8, "conc-list": [1]}], router={"name": "r", "version": "image:x"}))
    assert "is an image reference" in str(info.value)
