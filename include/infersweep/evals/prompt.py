"""Requests exactly as lm-eval's `local-chat-completions --apply_chat_template` builds them for gsm8k.

What lm-eval does for this task (read from lm-eval 0.4.13, `api/task.py`, `api/samplers.py`,
`api/utils.py`, `models/openai_completions.py`; checked by the parity lane):

* doc_to_text is the Jinja template below, doc_to_target the full `answer`.
* Few-shot docs come from the train split through the default `ContextSampler`: one
  `random.Random(fewshot_seed)` (seed 1234 unless `--seed` says otherwise) is created per task and
  `rnd.sample(train_docs, 5)` is called once per test doc, in test-split order. Doc *i* therefore
  always gets the same five shots, with or without `--limit`.
* `--apply_chat_template` switches `fewshot_as_multiturn` on by default (lm-eval 0.4.12, 0.4.13), so
  each shot is a user turn (its question) followed by an assistant turn (its full answer), and the
  test question is the last user turn. No system message (the task has no description).
  With `fewshot_as_multiturn=False` everything collapses into one user message joined with the
  target delimiter " " and the few-shot delimiter "\\n\\n".
* The payload is `{"messages", "model", "max_tokens", "temperature", "stop", "seed", **rest}`,
  with stop = `until` (+ the eos string when absent), truncated to four entries.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from typing import Any

from infersweep.evals.data import Gsm8kDoc

DOC_TO_TEXT_TEMPLATE = (
    "Question: {question}\nEnd your response with the answer on the last line, formatted as: #### [number]\n"
    "Answer:"
)
NUM_FEWSHOT = 5
FEWSHOT_SEED = 1234  # lm-eval's default `fewshot_random_seed` (the 4th value of `--seed 0,1234,1234,1234`)
PAYLOAD_SEED = 1234  # `seed` lm-eval's API models put in every request body
TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"
STOP: tuple[str, ...] = ("</s>", "<|im_end|>")
EOS_STRING = "</s>"  # InferenceX passes `eos_string=</s>` in model_args
MAX_STOP_SEQUENCES = 4  # OpenAI-style APIs accept at most four; lm-eval truncates to `stop[:4]`
TEMPERATURE = 0
TOP_P = 1

Message = dict[str, str]


def doc_to_text(doc: Gsm8kDoc) -> str:
    """The task's doc_to_text: `Question: …\\nEnd your response … #### [number]\\nAnswer:`."""
    return DOC_TO_TEXT_TEMPLATE.format(question=doc.question)


def doc_to_target(doc: Gsm8kDoc) -> str:
    """The task's doc_to_target: the full reference answer, reasoning and `#### N` line included."""
    return doc.answer


def fewshot_indices(n_docs: int, pool_size: int, *, k: int = NUM_FEWSHOT, seed: int | None = FEWSHOT_SEED) -> list[list[int]]:
    """Train-split indices of the `k` shots for each of the first `n_docs` test docs.

    Replays lm-eval's sampler: one `Random(seed)` and `rnd.sample(pool, k)` per doc, in order.
    `random.sample` picks positions from the population length alone, so sampling indices yields
    the same choice as sampling the doc list. (lm-eval only excludes the eval doc itself when the
    few-shot split *is* the test split, which is not the case for gsm8k.)
    """
    if k > pool_size:
        raise ValueError(f"cannot draw {k} few-shot examples from a pool of {pool_size}")
    rnd = random.Random(seed)
    population = range(pool_size)
    return [rnd.sample(population, k) for _ in range(n_docs)]


def build_messages(doc: Gsm8kDoc, shots: Sequence[Gsm8kDoc], *, fewshot_as_multiturn: bool = True) -> list[Message]:
    """The chat messages lm-eval sends for `doc` with the given few-shot examples."""
    if fewshot_as_multiturn:
        messages: list[Message] = []
        for shot in shots:
            messages.append({"role": "user", "content": doc_to_text(shot)})
            messages.append({"role": "assistant", "content": doc_to_target(shot)})
        messages.append({"role": "user", "content": doc_to_text(doc)})
        return messages
    # lm-eval's `multiturn_to_singleturn`: every turn rendered as text with its delimiter,
    # the final user turn without one.
    parts: list[str] = []
    for shot in shots:
        parts.append(_delimit(doc_to_text(shot), doc_to_target(shot)))
        parts.append(doc_to_target(shot) + FEWSHOT_DELIMITER)
    parts.append(doc_to_text(doc))
    return [{"role": "user", "content": "".join(parts)}]


def _delimit(question: str, answer: str) -> str:
    """A few-shot user turn's text: the question plus the target delimiter (lm-eval `build_qa_turn`)."""
    return question + TARGET_DELIMITER if answer != "" else question


def prompt_hash(messages: Sequence[Message]) -> str:
    """lm-eval's `prompt_hash`: sha256 of the JSON chat string it builds (`ensure_ascii=False`)."""
    return hashlib.sha256(json.dumps(list(messages), ensure_ascii=False).encode("utf-8")).hexdigest()


def max_tokens_for_context(context_len: int) -> int:
    """InferenceX's generation budget: min(16384, ctx - 4096), or ctx // 2 when ctx <= 4096."""
    if context_len <= 0:
        raise ValueError(f"context length must be positive, got {context_len}")
    budget = context_len - 4096 if context_len > 4096 else context_len // 2
    return min(budget, 16384)


def stop_sequences(stop: Sequence[str] = STOP, eos: str | None = EOS_STRING) -> list[str]:
    """lm-eval's `handle_stop_sequences(until, eos)` followed by the `[:4]` cut of the chat payload."""
    until = list(stop)
    if eos is not None and eos not in until:
        until.append(eos)
    return until[:MAX_STOP_SEQUENCES]


def build_payload(
    messages: Sequence[Message],
    *,
    model: str,
    max_tokens: int,
    stop: Sequence[str] = STOP,
    temperature: float = TEMPERATURE,
    top_p: float = TOP_P,
    seed: int = PAYLOAD_SEED,
) -> dict[str, Any]:
    """The `/v1/chat/completions` body, key for key what lm-eval's `LocalChatCompletion` posts."""
    return {
        "messages": list(messages),
        "model": model,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stop": stop_sequences(stop),
        "seed": seed,
        "top_p": top_p,
    }
