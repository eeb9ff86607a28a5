"""Recipe rules as data: YAML tables of `when:` conditions and the flags/env/files they set.

Each framework's builder (`recipes/sglang.py`, `trt.py`, `atom.py`) keeps its rules in
`recipes/data/<framework>.yaml`; code only walks the table. A rule matches a serve group's *facts* (model
prefix, precision, gpu, framework, spec-decoding, tp, ep, dp-attn, isl, osl, conc, …) and contributes
values, some of which are formulas of those facts — the bash arithmetic of InferenceX's scripts, e.g.
`--cuda-graph-max-bs: "min(conc, 256)"`. Formulas are a small, safe expression language (see `evaluate`):
numbers, strings, facts by name, + - * / // %, comparisons, and/or/not, `a if cond else b`, min, max,
int, str, round, next_pow2 — nothing else (no attribute access, no calls outside that list).
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Mapping
from importlib import resources
from typing import Any

import yaml

from infersweep.recipes.errors import RecipeError

Facts = Mapping[str, Any]

_BINOPS: dict[type[ast.operator], Any] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_CMPOPS: dict[type[ast.cmpop], Any] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


def _next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


_FUNCS: dict[str, Any] = {"min": min, "max": max, "int": int, "str": str, "round": round, "ceil": math.ceil,
                          "floor": math.floor, "next_pow2": _next_pow2, "abs": abs}


@functools.lru_cache(maxsize=4096)
def _parse(expr: str) -> ast.expr:
    try:
        return ast.parse(expr, mode="eval").body
    except SyntaxError as exc:
        raise RecipeError(f"recipe rule formula {expr!r} does not parse: {exc.msg}") from exc


def evaluate(expr: Any, facts: Facts) -> Any:
    """The value of a rule value: non-strings as they are; strings starting with `=` are formulas
    (`"=min(conc, 256)"`), other strings are literal text, in which `{fact}` is substituted."""
    if not isinstance(expr, str):
        return expr
    if expr.startswith("="):
        return _eval(_parse(expr[1:].strip()), facts, expr)
    if "{" in expr:
        try:
            return expr.format_map(_Strict(facts))
        except (KeyError, ValueError) as exc:
            raise RecipeError(f"recipe rule text {expr!r}: {exc}") from exc
    return expr


class _Strict(dict[str, Any]):
    def __init__(self, facts: Facts) -> None:
        super().__init__(facts)

    def __missing__(self, key: str) -> Any:
        raise KeyError(f"unknown fact {key!r}")


def _eval(node: ast.expr, facts: Facts, src: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in facts:
            return facts[node.id]
        if node.id in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[node.id]
        raise RecipeError(f"recipe rule formula {src!r}: unknown fact {node.id!r} (known: {', '.join(sorted(facts))})")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return _BINOPS[type(node.op)](_eval(node.left, facts, src), _eval(node.right, facts, src))
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, facts, src)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.Not):
            return not value
    if isinstance(node, ast.BoolOp):
        values = [_eval(v, facts, src) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, facts, src)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, facts, src)
            if type(op) not in _CMPOPS or not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, facts, src) else node.orelse, facts, src)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS and not node.keywords:
        return _FUNCS[node.func.id](*(_eval(a, facts, src) for a in node.args))
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, facts, src) for e in node.elts]
    raise RecipeError(f"recipe rule formula {src!r}: {type(node).__name__} is not allowed")


def matches(when: Mapping[str, Any] | None, facts: Facts) -> bool:
    """A rule's `when:`: every key must hold. A list means any of its values; a string starting with `=` is a
    formula that must be true (`tp: "=tp >= 4"`); the key `if:` is a free formula over all facts."""
    for key, want in (when or {}).items():
        if key == "if":
            if not evaluate(want if str(want).startswith("=") else f"={want}", facts):
                return False
            continue
        if key not in facts:
            raise RecipeError(f"recipe rule condition on unknown fact {key!r} (known: {', '.join(sorted(facts))})")
        have = facts[key]
        if isinstance(want, list):
            if have not in want:
                return False
        elif isinstance(want, str) and want.startswith("="):
            if not evaluate(want, {**facts, "value": have}):
                return False
        elif have != want:
            return False
    return True


@functools.lru_cache(maxsize=16)
def load_table(name: str) -> dict[str, Any]:
    """`recipes/data/<name>.yaml`, parsed once per process."""
    text = resources.files("infersweep.recipes").joinpath("data", f"{name}.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise RecipeError(f"recipes/data/{name}.yaml must be a mapping")
    return data
