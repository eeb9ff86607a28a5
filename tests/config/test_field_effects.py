"""No silent drops: every key the master schema accepts changes the plan, or is refused with a clear error.

The test walks the schema itself (`SCHEMA_MODELS` and runners.yaml `RunnerHardware`), so a field added to the
schema without a case here fails `test_every_schema_field_has_a_case`. Each case mutates one key of a small,
valid entry and checks what its declared effect (`json_schema_extra["effect"]`) promises:

- `row`: the InferenceX rows (`plan --format inferencex`, fixed-seq-len and agentic) change;
- `multinode`: the multinode rows change (planned as upstream plans them, not executed yet), and the key is
  refused in a single-node entry, with the key named in the error;
- `container`: a mapping or list whose own keys are the cases.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from infersweep.config.errors import ConfigError
from infersweep.config.master import SCHEMA_MODELS, field_effect
from infersweep.config.runners import RunnerHardware
from infersweep.config.sweep import load_sweep
from infersweep.plan.planner import PlanFilters, expand
from infersweep.plan.summary import inferencex_rows

KEY = "m-fp8-h200-vllm"
WORKER = {"num-worker": 1, "tp": 4, "ep": 4, "dp-attn": False}


def _entry() -> dict[str, Any]:
    return {
        "image": "vllm/vllm-openai:v0.11.0", "model": "org/m", "model-prefix": "m", "runner": "h200",
        "precision": "fp8", "framework": "vllm", "multinode": False,
        "scenarios": {
            "fixed-seq-len": [{"isl": 1024, "osl": 1024, "search-space": [
                {"tp": 4, "ep": 2, "dp-attn": False, "conc-start": 1, "conc-end": 4}]}],
            "agentic-coding": [{"dram-utilization": 0.5, "search-space": [
                {"tp": 4, "kv-offloading": "dram", "kv-offload-backend": {"name": "lmcache", "version": "0.3.9"},
                 "router": {"name": "vllm-router", "version": "0.1.14"}, "conc-list": [4]},
                {"tp": 2, "offloading": "cpu", "conc-list": [8]}]}],
        },
    }


def _multinode_entry() -> dict[str, Any]:
    raw = _entry()
    raw.update(multinode=True, disagg=True, framework="dynamo-vllm", **{"kv-p2p-transfer": "nixl"})
    raw["scenarios"] = {"fixed-seq-len": [{"isl": 1024, "osl": 1024, "search-space": [
        {"conc-list": [8], "prefill": dict(WORKER), "decode": dict(WORKER)}]}]}
    return raw


FIXED = ("scenarios", "fixed-seq-len", 0)
FPOINT = (*FIXED, "search-space", 0)
AGENTIC = ("scenarios", "agentic-coding", 0)
APOINT = (*AGENTIC, "search-space", 0)
LEGACY = (*AGENTIC, "search-space", 1)
PREFILL = ("scenarios", "fixed-seq-len", 0, "search-space", 0, "prefill")
DECODE = ("scenarios", "fixed-seq-len", 0, "search-space", 0, "decode")

#: (model, YAML key) → (path of the value to set, new value). `row` cases use `_entry()`; `multinode` cases
#: name where the key is refused in a single-node entry, and where it validates in `_multinode_entry()`.
ROW_CASES: dict[tuple[str, str], tuple[tuple[Any, ...], Any]] = {
    ("MasterEntry", "image"): (("image",), "vllm/vllm-openai:v0.12.0"),
    ("MasterEntry", "model"): (("model",), "org/m2"),
    ("MasterEntry", "model-prefix"): (("model-prefix",), "m2"),
    ("MasterEntry", "runner"): (("runner",), "b200"),
    ("MasterEntry", "precision"): (("precision",), "fp4"),
    ("MasterEntry", "framework"): (("framework",), "sglang"),
    # The entry (now with prefill/decode pools) leaves the single-node plan.
    ("MasterEntry", "multinode"): ((), lambda raw: _multinode_entry()),
    # Declared once per entry (upstream refuses it at both levels), so the point's router moves up.
    ("MasterEntry", "router"): ((), lambda raw: _set(_drop(raw, (*APOINT, "router")), ("router",),
                                                     {"name": "sglang-router", "version": "0.3.2"})),
    ("FixedSeqLen", "isl"): ((*FIXED, "isl"), 8192),
    ("FixedSeqLen", "osl"): ((*FIXED, "osl"), 2048),
    ("FixedSeqLenPoint", "tp"): ((*FPOINT, "tp"), 8),
    ("FixedSeqLenPoint", "ep"): ((*FPOINT, "ep"), 4),
    ("FixedSeqLenPoint", "dp-attn"): ((*FPOINT, "dp-attn"), True),
    ("FixedSeqLenPoint", "pp"): ((*FPOINT, "pp"), 2),
    ("FixedSeqLenPoint", "dcp-size"): ((*FPOINT, "dcp-size"), 2),
    ("FixedSeqLenPoint", "pcp-size"): ((*FPOINT, "pcp-size"), 2),
    ("FixedSeqLenPoint", "spec-decoding"): ((*FPOINT, "spec-decoding"), "mtp"),
    ("FixedSeqLenPoint", "router"): ((*FPOINT, "router"), {"name": "vllm-router", "version": "0.1.14"}),
    ("FixedSeqLenPoint", "conc-start"): ((*FPOINT, "conc-start"), 2),
    ("FixedSeqLenPoint", "conc-end"): ((*FPOINT, "conc-end"), 8),
    ("FixedSeqLenPoint", "conc-list"): (FPOINT, {"tp": 4, "conc-list": [3, 5]}),
    ("AgenticCoding", "duration"): ((*AGENTIC, "duration"), 600),
    ("AgenticCoding", "dram-utilization"): ((*AGENTIC, "dram-utilization"), 0.9),
    ("AgenticPoint", "kv-offloading"): (APOINT, {"tp": 4, "kv-offloading": "none", "conc-list": [4]}),
    ("AgenticPoint", "kv-offload-backend"): ((*APOINT, "kv-offload-backend"), {"name": "mooncake"}),
    ("AgenticPoint", "offloading"): ((*LEGACY, "offloading"), "hicache"),
    ("Router", "name"): ((*APOINT, "router", "name"), "sglang-router"),
    ("Router", "version"): ((*APOINT, "router", "version"), "0.1.15"),
    ("KvOffloadBackend", "name"): ((*APOINT, "kv-offload-backend", "name"), "hicache"),
    ("KvOffloadBackend", "version"): ((*APOINT, "kv-offload-backend", "version"), "0.4.0"),
}
#: Agentic points share the fixed-seq-len point's fields; one case proves each of them on the agentic row too.
AGENTIC_SHARED = {"tp": 8, "ep": 2, "dp-attn": True, "pp": 2, "dcp-size": 2, "pcp-size": 2, "spec-decoding": "mtp",
                  "conc-list": [16]}
#: (model, key) → (where it is refused in `_entry()`, value), (the change in `_multinode_entry()`).
MULTINODE_CASES: dict[tuple[str, str], tuple[tuple[tuple[Any, ...], Any], tuple[tuple[Any, ...], Any]]] = {
    ("MasterEntry", "disagg"): ((("disagg",), True), (("disagg",), False)),
    ("MasterEntry", "kv-p2p-transfer"): ((("kv-p2p-transfer",), "nixl"), (("kv-p2p-transfer",), "mooncake")),
    ("FixedSeqLenPoint", "kv-p2p-transfer"): (
        ((*FPOINT, "kv-p2p-transfer"), "nixl"),
        ((), lambda raw: _set(_drop(raw, ("kv-p2p-transfer",)), (*FPOINT, "kv-p2p-transfer"), "mooncake"))),
    ("FixedSeqLenPoint", "prefill"): (((*FPOINT, "prefill"), dict(WORKER)), ((*FPOINT, "prefill"), {**WORKER, "tp": 8})),
    ("FixedSeqLenPoint", "decode"): (((*FPOINT, "decode"), dict(WORKER)), ((*FPOINT, "decode"), {**WORKER, "tp": 2})),
}
#: Worker-pool keys (only inside prefill/decode): a new value changes the multinode row; a bad one is refused.
WORKER_CASES: dict[str, tuple[Any, Any]] = {
    "num-worker": (2, -1), "tp": (8, 0), "ep": (8, 0), "dp-attn": (True, "yes"), "pp": (2, 0), "dcp-size": (2, 3),
    "pcp-size": (2, 0), "additional-settings": (["CONFIG_FILE=x.yaml"], "CONFIG_FILE=x"),
    # hardware must be set on both pools or neither
    "hardware": ((lambda raw: _set(_set(raw, (*PREFILL, "hardware"), "gb200"), (*DECODE, "hardware"), "gb200")), ""),
}
HARDWARE_CASES = {"available-cpu-dram-mib": 1_471_356, "gpus-per-node": 4}


def _drop(raw: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    out = copy.deepcopy(raw)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return out


def _set(raw: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """`raw` with the value at `path` set (a callable `value` maps the whole entry instead)."""
    if callable(value):
        return value(raw)  # type: ignore[no-any-return]
    out = copy.deepcopy(raw)
    node: Any = out
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return out


def _rows(tmp_path: Path, raw: dict[str, Any], runners: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    (tmp_path / "runners.yaml").write_text(yaml.safe_dump(runners or {
        "labels": {"h200": ["h200_0"], "b200": ["b200_0"]},
        "hardware": {"h200": {"available-cpu-dram-mib": 1_998_848, "gpus-per-node": 8},
                     "b200": {"available-cpu-dram-mib": 3_095_781, "gpus-per-node": 8}}}))
    master = tmp_path / "master.yaml"
    master.write_text(yaml.safe_dump({KEY: raw}, sort_keys=False))
    sweep = load_sweep([master], runners=tmp_path / "runners.yaml")
    expansion = expand(sweep, PlanFilters())
    return inferencex_rows(expansion.jobs, expansion.agentic, expansion.keys, expansion.multinode)


def _schema_fields() -> set[tuple[str, str, str]]:
    models: tuple[type[BaseModel], ...] = (*SCHEMA_MODELS, RunnerHardware)
    out = set()
    for model in models:
        for name, info in model.model_fields.items():
            key = info.alias or name
            effect = "row" if model is RunnerHardware else field_effect(model, name)
            out.add((model.__name__, key, effect))
    return out


def test_every_schema_field_has_a_case() -> None:
    """A new schema field must declare its effect and get a case here, or this fails."""
    covered = {(m, k, "row") for m, k in ROW_CASES} | {(m, k, "multinode") for m, k in MULTINODE_CASES}
    covered |= {("WorkerConfig", k, "multinode") for k in WORKER_CASES}
    covered |= {("RunnerHardware", k, "row") for k in HARDWARE_CASES}
    covered |= {("AgenticPoint", k, field_effect_of("AgenticPoint", k)) for k in AGENTIC_SHARED}
    containers = {f for f in _schema_fields() if f[2] == "container"}
    # AgenticPoint inherits every FixedSeqLenPoint field: the multinode ones are the same cases.
    inherited = {("AgenticPoint", k, "multinode") for _m, k in
                 [mk for mk in MULTINODE_CASES if mk[0] == "FixedSeqLenPoint"]}
    inherited |= {("AgenticPoint", k, "row") for m, k in ROW_CASES if m == "FixedSeqLenPoint"}
    assert _schema_fields() - containers - inherited == covered - inherited


def field_effect_of(model_name: str, key: str) -> str:
    model = {m.__name__: m for m in SCHEMA_MODELS}[model_name]
    name = next(n for n, f in model.model_fields.items() if (f.alias or n) == key)
    return field_effect(model, name)


@pytest.mark.parametrize("case", sorted(ROW_CASES), ids=lambda c: f"{c[0]}.{c[1]}")
def test_row_fields_change_the_rows(case: tuple[str, str], tmp_path: Path) -> None:
    path, value = ROW_CASES[case]
    before = _rows(tmp_path, _entry())
    after = _rows(tmp_path, _set(_entry(), path, value))
    assert before != after, f"{case}: setting {path} = {value!r} changed no row"


@pytest.mark.parametrize("key", sorted(AGENTIC_SHARED))
def test_point_fields_change_agentic_rows_too(key: str, tmp_path: Path) -> None:
    before = [r for r in _rows(tmp_path, _entry()) if r.get("scenario-type")]
    after = [r for r in _rows(tmp_path, _set(_entry(), (*APOINT, key), AGENTIC_SHARED[key]))
             if r.get("scenario-type")]
    assert before != after, f"agentic {key} changed no row"


@pytest.mark.parametrize("case", sorted(MULTINODE_CASES), ids=lambda c: f"{c[0]}.{c[1]}")
def test_multinode_fields_change_multinode_rows_and_are_refused_elsewhere(case: tuple[str, str],
                                                                          tmp_path: Path) -> None:
    (bad_path, bad_value), (path, value) = MULTINODE_CASES[case]
    before = _rows(tmp_path, _multinode_entry())
    assert before and _rows(tmp_path, _set(_multinode_entry(), path, value)) != before
    with pytest.raises(ConfigError) as info:
        _rows(tmp_path, _set(_entry(), bad_path, bad_value))
    assert case[1] in str(info.value) and "multinode" in str(info.value)


@pytest.mark.parametrize("key", sorted(WORKER_CASES))
def test_worker_fields_change_multinode_rows(key: str, tmp_path: Path) -> None:
    """Pool keys of multinode entries: a new value changes the row; a bad one is refused, naming its path."""
    good, bad = WORKER_CASES[key]
    before = _rows(tmp_path, _multinode_entry())
    assert _rows(tmp_path, _set(_multinode_entry(), (*PREFILL, key), good)) != before
    with pytest.raises(ConfigError) as info:
        _rows(tmp_path, _set(_multinode_entry(), (*PREFILL, key), bad))
    assert f"prefill.{key}" in str(info.value)


@pytest.mark.parametrize("key", sorted(HARDWARE_CASES))
def test_runner_hardware_changes_the_dram_budget(key: str, tmp_path: Path) -> None:
    hardware = {"available-cpu-dram-mib": 1_998_848, "gpus-per-node": 8}
    runners = {"labels": {"h200": ["h200_0"]}, "hardware": {"h200": hardware}}
    before = _rows(tmp_path, _entry(), runners)
    runners["hardware"]["h200"] = {**hardware, key: HARDWARE_CASES[key]}
    after = _rows(tmp_path, _entry(), runners)
    budget = [(b["total-cpu-dram-gb"], a["total-cpu-dram-gb"]) for b, a in zip(before, after, strict=True)
              if b.get("kv-offloading") == "dram"]
    assert budget and all(x != y for x, y in budget)


def test_unknown_keys_are_refused_not_ignored(tmp_path: Path) -> None:
    """Keys neither upstream schema has (earlier infersweep accepted some of them and ignored them)."""
    for path, key in ((FPOINT, "max-num-batched-tokens"), (AGENTIC, "trace-source"), ((), "hardware")):
        raw = _set(_entry(), (*path, key), 1)
        with pytest.raises(ConfigError) as info:
            _rows(tmp_path, raw)
        assert f"unknown key '{key}'" in str(info.value)
