"""The benchmark client each serve group gets: InferenceX's per-script client flags, as data.

InferenceX's scripts call `run_benchmark_serving --backend vllm|openai|openai-chat [--use-chat-template]
[--dsv4]`; which one a job gets is a property of its script, like its server flags. `recipes/data/client.yaml`
holds those choices as `when:` rules over the same facts the SGLang table uses (first match wins), so a new
script's client is one table row, and `tests/recipes` checks the table against every script's own call.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import ValidationError

from infersweep.plan.models import ServeGroup
from infersweep.recipes.errors import RecipeError
from infersweep.recipes.model import ClientSpec
from infersweep.recipes.ruledata import load_table, matches

TABLE = "client"


@functools.lru_cache(maxsize=1)
def _rules() -> tuple[tuple[dict[str, Any], ClientSpec], ...]:
    data = load_table(TABLE)
    out = []
    for i, rule in enumerate(data.get("rules") or []):
        where = f"recipes/data/{TABLE}.yaml: rules[{i}]"
        if not isinstance(rule, dict) or set(rule) - {"when", "client", "why"}:
            raise RecipeError(f"{where}: a rule is a mapping of when:, client: and why: only")
        try:
            spec = ClientSpec.model_validate(rule.get("client") or {})
        except ValidationError as exc:
            raise RecipeError(f"{where}.client: {exc.errors(include_url=False)[0]['msg']}") from exc
        out.append((dict(rule.get("when") or {}), spec))
    return tuple(out)


def client_for(group: ServeGroup) -> ClientSpec:
    """The client InferenceX's script for `group` runs (the table's first matching rule; else the default,
    `--backend vllm` without a chat template, which most scripts use)."""
    from infersweep.recipes.sglang import facts_of

    facts = facts_of(group)
    for when, spec in _rules():
        if matches(when, facts):
            return spec
    return ClientSpec()
