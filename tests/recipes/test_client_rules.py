"""The benchmark client per serve group (recipes/data/client.yaml) is the one InferenceX's script runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from infersweep.plan.models import ServeGroup
from infersweep.recipes import client as client_mod
from infersweep.recipes.errors import RecipeError
from infersweep.recipes.model import ClientSpec, Recipe
from infersweep.recipes.registry import build_recipe
from tests.recipes import ix_oracle as oracle

needs_shared = pytest.mark.skipif(
    not (oracle.FIXTURE_DIR / "nvidia-master.yaml").exists()
    or not (oracle.REFERENCE_DIR / "benchmarks" / "benchmark_lib.sh").exists(),
    reason=f"InferenceX fixture/reference absent under {oracle.SHARED} (the shared/ folder is not on this machine)",
)
#: A full capture (`python -m tests.recipes.ix_oracle --out F`) checks every group when IX_LAUNCHES names it.
IX_LAUNCHES = Path(os.environ.get("IX_LAUNCHES") or "/nonexistent/ix-launches.jsonl")


@pytest.fixture(scope="module")
def groups() -> list[ServeGroup]:
    return oracle.fleet_groups()


def one(groups: list[ServeGroup], key: str) -> ServeGroup:
    return next(g for g in groups if g.config_key == key)


#: One group per rule of the table (and the default), with what its script passes run_benchmark_serving.
CASES = [
    ("dsv4-fp4-b200-trt", {"backend": "openai-chat", "use-chat-template": False, "dsv4": False}),
    ("dsv4-fp4-b300-trt-mtp", {"backend": "openai", "use-chat-template": True, "dsv4": True}),
    ("dsv4-fp8-h200-vllm-mtp", {"backend": "vllm", "use-chat-template": True, "dsv4": True}),
    ("dsr1-fp8-h200-trt-mtp", {"backend": "openai", "use-chat-template": True, "dsv4": False}),
    ("gptoss-fp4-b200-trt", {"backend": "openai", "use-chat-template": False, "dsv4": False}),
    ("dsr1-fp8-b200-sglang-mtp", {"backend": "vllm", "use-chat-template": True, "dsv4": False}),
    ("qwen3.5-fp8-b300-sglang", {"backend": "vllm", "use-chat-template": True, "dsv4": False}),
    ("dsr1-fp8-h200-sglang", {"backend": "vllm", "use-chat-template": False, "dsv4": False}),
]


@needs_shared
@pytest.mark.parametrize(("key", "want"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_gives_the_scripts_client(groups: list[ServeGroup], key: str, want: dict) -> None:
    recipe = build_recipe(one(groups, key), None)
    assert recipe.client.model_dump() == want
    assert recipe.client.endpoint == ("/v1/chat/completions" if want["backend"] == "openai-chat" else "/v1/completions")


@needs_shared
@pytest.mark.integration  # runs InferenceX's scripts under bash (the oracle)
def test_clients_match_what_the_scripts_run(groups: list[ServeGroup]) -> None:
    """Against the scripts' own run_benchmark_serving calls: every group of a full capture, else one per rule."""
    if IX_LAUNCHES.exists():
        records = [json.loads(line) for line in IX_LAUNCHES.read_text().splitlines()]
    else:
        records = [oracle.capture(one(groups, key)) for key, _ in CASES]
    by_id = {g.id: g for g in groups}
    wrong = []
    for rec in records:
        seen = (rec.get("intended") or {}).get("client") or rec.get("client")
        assert seen is not None, f"{rec['group-id']}: the oracle recorded no client call ({rec.get('error')})"
        ours = client_mod.client_for(by_id[rec["group-id"]]).model_dump()
        if ours != {k: seen[k] for k in ours}:
            wrong.append((rec["group-id"], ours, seen))
    assert wrong == []


def test_client_spec_json_and_bench_options() -> None:
    spec = ClientSpec.model_validate({"backend": "openai", "use-chat-template": True, "dsv4": True})
    assert spec.model_dump() == {"backend": "openai", "use-chat-template": True, "dsv4": True}
    assert spec.bench_options() == {"chat": False, "prompt_template": "dsv4"}
    assert ClientSpec(backend="openai-chat").bench_options() == {"chat": True, "prompt_template": "none"}
    assert ClientSpec().bench_options() == {"chat": False, "prompt_template": "none"}
    with pytest.raises(ValueError, match="template them twice"):
        ClientSpec(backend="openai-chat", use_chat_template=True)
    with pytest.raises(ValueError, match="implies"):
        ClientSpec(dsv4=True)


def test_default_client_keeps_the_fingerprint_and_a_changed_one_changes_it() -> None:
    base = Recipe(image="img", argv=("vllm", "serve", "m"), model="m")
    assert base.fingerprint() == Recipe.model_validate({**base.model_dump(), "client": {}}).fingerprint()
    chat = base.model_copy(update={"client": ClientSpec(backend="openai-chat")})
    assert chat.fingerprint() != base.fingerprint()


def test_a_bad_rule_names_the_table_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "load_table", lambda name: {"rules": [{"when": {}, "client": {"backend": "x"}}]})
    client_mod._rules.cache_clear()
    try:
        with pytest.raises(RecipeError, match=r"client.yaml: rules\[0\].client"):
            client_mod._rules()
    finally:
        monkeypatch.undo()
        client_mod._rules.cache_clear()
