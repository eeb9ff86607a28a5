"""The random dataset: prompts of exact token length, built once before the run.

Completions mode sends the prompt as a list of token ids, so the server sees exactly the intended number of
tokens (no decode→re-encode drift, the bug behind vLLM PRs #17408/#24937). Ids are drawn uniformly from the
tokenizer's vocabulary minus every added/special token (BOS/EOS/chat markers would change the server's
behaviour), independently per request, so no two prompts share a prefix-cache block in practice.

Chat mode (speculative decoding needs natural-ish text) builds text from "stable" tokens (tokens that
re-encode to themselves), renders the chat template, and adjusts the content until the *templated* prompt
encodes to exactly the intended length; the server's `usage.prompt_tokens` is still checked per request.

Templated mode (InferenceX's ``--use-chat-template``, ``--dsv4``) renders the same exact-length templated
prompt on the client and sends its token ids to `/v1/completions`. InferenceX's client shortens the content by
the template's length minus one and sends text, so its prompts come out about a token off; ours are exact.

Lengths follow InferenceX's range ratio: uniform integers in ``[⌊r·L⌋, L]`` (r = 1 → exact). vLLM's
``--random-range-ratio`` means ``[⌊L(1−r)⌋, ⌈L(1+r)⌉]``; :func:`vllm_equivalent_range` converts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson

from infersweep.bench.config import BenchConfig, PromptTemplate
from infersweep.bench.tokenizer import LoadedTokenizer, TokenizerError

#: Chat prompts: decode→template→encode rounds per attempt, and fresh attempts, before giving up.
_ADJUST_ROUNDS = 12
_ATTEMPTS = 8
#: Candidate ids checked for re-encode stability (a sample keeps start-up fast on 150k+ vocabularies).
_STABLE_SAMPLE = 20_000


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request: the pre-serialised body and the lengths the server must report back."""

    index: int
    prompt_len: int
    output_len: int
    body: bytes


def sample_lengths(rng: np.random.Generator, length: int, ratio: float, n: int) -> np.ndarray:
    """``n`` lengths uniform in ``[max(⌊ratio·length⌋, 1), length]`` (InferenceX semantics)."""
    low = max(int(ratio * length), 1)  # int() as InferenceX (truncation)
    return rng.integers(low, length + 1, size=n)


def vllm_equivalent_range(length: int, inferencex_ratio: float) -> tuple[int, int]:
    """The ``[low, high]`` interval of InferenceX ratio ``r`` (for reports next to vLLM's convention)."""
    return max(int(inferencex_ratio * length), 1), length


def _stable_ids(tok: LoadedTokenizer, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sample = allowed if len(allowed) <= _STABLE_SAMPLE else rng.choice(allowed, _STABLE_SAMPLE, replace=False)
    stable = []
    for tid in sample.tolist():
        text = tok.decode([tid])
        if text and "\ufffd" not in text and tok.encode(text) == [tid]:
            stable.append(tid)
    if len(stable) < 16:
        raise TokenizerError(
            f"{tok.source}: too few re-encodable tokens ({len(stable)}) to build chat prompts"
        )
    return np.asarray(stable, dtype=np.int64)


#: DeepSeek-V4's framing of one user turn in thinking mode: what InferenceX's client (`--dsv4`, its
#: encoding_dsv4.encode_messages(..., thinking_mode="thinking")) renders instead of a jinja template.
DSV4_USER_TURN = "<｜begin▁of▁sentence｜><｜User｜>{content}<｜Assistant｜><think>"


def render_prompt(tok: LoadedTokenizer, content: str, template: PromptTemplate = "tokenizer") -> str:
    """One user message rendered as the server will see it: the tokenizer's chat template (with the
    generation prompt), or DeepSeek-V4's own framing."""
    if template == "dsv4":
        return DSV4_USER_TURN.format(content=content)
    return tok.apply_chat_template([{"role": "user", "content": content}])


def _chat_text(tok: LoadedTokenizer, target: int, pool: np.ndarray, rng: np.random.Generator,
               template: PromptTemplate = "tokenizer") -> str:
    """Content text whose templated rendering encodes to exactly ``target`` tokens."""
    overhead = len(tok.encode(render_prompt(tok, "", template)))
    if target <= overhead:
        raise TokenizerError(
            f"{tok.source}: ISL {target} is not above the chat template's own {overhead} tokens; raise --isl"
        )
    for _ in range(_ATTEMPTS):
        ids = rng.choice(pool, target - overhead).tolist()
        for _ in range(_ADJUST_ROUNDS):
            text = tok.decode(ids)
            n = len(tok.encode(render_prompt(tok, text, template)))
            if n == target:
                return text
            if n < target:
                ids.extend(rng.choice(pool, target - n).tolist())
            else:
                ids = ids[: max(len(ids) - (n - target), 1)]
    raise TokenizerError(
        f"{tok.source}: could not build a chat prompt of exactly {target} tokens after {_ATTEMPTS} attempts"
    )


def build_requests(cfg: BenchConfig, tok: LoadedTokenizer, n: int, *, offset: int = 0) -> list[RequestSpec]:
    """``n`` distinct requests for ``cfg`` (index ``offset``…); deterministic for a given seed and offset."""
    rng = np.random.default_rng([cfg.seed, offset])
    in_lens = sample_lengths(rng, cfg.isl, cfg.random_range_ratio, n)
    out_lens = sample_lengths(rng, cfg.osl, cfg.random_range_ratio, n)
    allowed = np.asarray(tok.allowed_ids(), dtype=np.int64)
    if allowed.size == 0:
        raise TokenizerError(f"{tok.source}: the vocabulary has no non-special tokens")
    templated = cfg.chat or cfg.prompt_template != "none"
    pool = _stable_ids(tok, allowed, rng) if templated else allowed
    common: dict[str, object] = {
        "model": cfg.model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,  # as InferenceX; greedy keeps runs comparable
    }
    if cfg.ignore_eos:
        common["ignore_eos"] = True
    specs: list[RequestSpec] = []
    for i in range(n):
        isl, osl = int(in_lens[i]), int(out_lens[i])
        body: dict[str, object] = dict(common)
        if cfg.chat:
            body["messages"] = [{"role": "user", "content": _chat_text(tok, isl, pool, rng)}]
            # vLLM reads max_completion_tokens first; older servers only know max_tokens.
            body["max_completion_tokens"] = osl
            body["max_tokens"] = osl
        elif cfg.prompt_template != "none":
            # Token ids of the rendered prompt: the server must not re-tokenise the text (a second BOS, merges
            # across the template's seams) and change the length InferenceX's client only approximates.
            content = _chat_text(tok, isl, pool, rng, cfg.prompt_template)
            body["prompt"] = tok.encode(render_prompt(tok, content, cfg.prompt_template))
            body["max_tokens"] = osl
        else:
            body["prompt"] = rng.choice(pool, isl).tolist()
            body["max_tokens"] = osl
        body.update(cfg.extra_body)
        specs.append(RequestSpec(index=offset + i, prompt_len=isl, output_len=osl, body=orjson.dumps(body)))
    return specs
