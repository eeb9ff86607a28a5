"""Loaded as `sitecustomize` into the `lm_eval` subprocess of the lm-eval backend (never imported here).

Reproduces the one behavioural patch InferenceX applies to lm-eval: a chat choice whose `content`
is empty is read from `reasoning_content` instead (reasoning models that put everything there
would otherwise score zero). Everything else in lm-eval stays as released.
"""

from __future__ import annotations

import inspect
from typing import Any


def _text_of(choice: dict[str, Any]) -> str:
    message = choice.get("message") or {}
    content = message.get("content")
    if content in (None, "", []):
        content = message.get("reasoning_content") or ""
    return content


def _parse_generations(outputs: Any, **kwargs: Any) -> list[str]:
    results: list[str] = []
    for out in outputs if isinstance(outputs, list) else [outputs]:
        try:
            choices = out.get("choices", [])
            texts = ["" for _ in choices]
            for choice in choices:
                texts[choice.get("index", 0)] = _text_of(choice)
        except (AttributeError, IndexError, KeyError, TypeError):
            texts = [""]
        results.extend(texts)
    return results


def _install() -> None:
    try:
        from lm_eval.models.openai_completions import LocalChatCompletion
    except ImportError:  # not an lm_eval process, or a layout we do not know: change nothing
        return
    if isinstance(inspect.getattr_static(LocalChatCompletion, "parse_generations"), staticmethod):
        LocalChatCompletion.parse_generations = staticmethod(_parse_generations)
    else:
        LocalChatCompletion.parse_generations = lambda self, outputs, **kw: _parse_generations(outputs, **kw)


_install()
