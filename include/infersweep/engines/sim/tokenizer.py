"""Tokenizers for the simulator.

- `HFTokenizer`: a Hugging Face `tokenizer.json` directory (`--tokenizer DIR`), through the `tokenizers`
  package, with the chat template from `tokenizer_config.json` (or `chat_template.jinja`) rendered by a
  sandboxed Jinja environment the way `transformers.apply_chat_template` does.
- `BuiltinTokenizer`: deterministic and dependency-free. Text splits into pieces (an optional leading space
  plus a run of letters, up to three digits, or one other character; leftover whitespace), and each piece's
  id is `3 + crc32(piece) mod (vocab_size - 3)`. Ids 0-2 are `<|endoftext|>`, `<|im_start|>`, `<|im_end|>`.
  Chats use a ChatML template. Counts are stable across runs and machines, but they are not any real
  model's counts: pass `--tokenizer` (or send token-id prompts) when exact ISL matters.

Both produce output text as (token id, text piece) pairs, so the streamed text of N tokens is exactly N
pieces long and usage counts never need re-tokenization.
"""

from __future__ import annotations

import json
import re
import zlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

#: How many distinct "ordinary word" tokens the synthetic output cycles through.
FILLER_SIZE = 512


class TokenizerError(ValueError):
    """The tokenizer directory is unusable, or a chat could not be rendered."""


class SimTokenizer(ABC):
    """What the server needs from a tokenizer."""

    vocab_size: int
    eos_token_id: int | None

    @abstractmethod
    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Text of `ids` (special tokens skipped)."""

    @abstractmethod
    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        """The chat prompt text the template makes of `messages`."""

    @abstractmethod
    def pieces(self, text: str) -> list[tuple[int, str]]:
        """`text` as (id, piece) pairs whose pieces concatenate back to `text`."""

    @abstractmethod
    def filler(self) -> list[tuple[int, str]]:
        """Ordinary-word tokens that synthetic output cycles through."""

    def encode_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> list[int]:
        """Token ids of the rendered chat (no extra special tokens: the template has them)."""
        return self.encode(self.render_chat(messages, add_generation_prompt=add_generation_prompt),
                           add_special_tokens=False)


# --- built-in -------------------------------------------------------------------------------------
_PIECE_RE = re.compile(r" ?[^\W\d_]+| ?\d{1,3}| ?[^\s\w]| ?_|\s+(?!\S)|\s+")
_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in _SPECIALS) + ")")
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"


def _synthetic_word(i: int) -> str:
    # Two or three pronounceable syllables: stable, readable, never a special token.
    c, v = _CONSONANTS, _VOWELS
    s1 = c[i % 14] + v[(i // 14) % 5]
    s2 = c[(i // 70) % 14] + v[(i // 980) % 5]
    return " " + s1 + s2 + ("n" if i % 3 == 0 else "")


class BuiltinTokenizer(SimTokenizer):
    """Deterministic regex/crc32 tokenizer (see the module docstring)."""

    def __init__(self, vocab_size: int = 32000) -> None:
        if vocab_size < 1024:
            raise TokenizerError("the built-in tokenizer needs vocab_size >= 1024")
        self.vocab_size = vocab_size
        self.eos_token_id = 0
        self._span = vocab_size - len(_SPECIALS)
        # Distinct ids only: crc32 collisions between synthetic words would make decode ambiguous.
        self._filler_text: dict[int, str] = {}
        n = 0
        while len(self._filler_text) < FILLER_SIZE:
            w = _synthetic_word(n)
            self._filler_text.setdefault(self._piece_id(w), w)
            n += 1
        self._filler = list(self._filler_text.items())

    def _piece_id(self, piece: str) -> int:
        return len(_SPECIALS) + zlib.crc32(piece.encode("utf-8")) % self._span

    def pieces(self, text: str) -> list[tuple[int, str]]:
        out: list[tuple[int, str]] = []
        for part in _SPECIAL_RE.split(text):
            if not part:
                continue
            if part in _SPECIALS:
                out.append((_SPECIALS.index(part), part))
            else:
                out.extend((self._piece_id(p), p) for p in _PIECE_RE.findall(part))
        return out

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        # No BOS: the built-in tokenizer adds no special tokens to plain text.
        return [i for i, _ in self.pieces(text)]

    def decode(self, ids: list[int]) -> str:
        # Not invertible (crc32); ids the sim generated map back to their words, others to synthetic ones.
        return "".join(
            self._filler_text.get(i) or _synthetic_word(i) for i in ids if i >= len(_SPECIALS)
        )

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        parts = [f"<|im_start|>{m['role']}\n{content_text(m.get('content'))}<|im_end|>\n" for m in messages]
        if add_generation_prompt:
            parts.append("<|im_start|>assistant\n")
        return "".join(parts)

    def filler(self) -> list[tuple[int, str]]:
        return list(self._filler)


# --- Hugging Face tokenizer.json ------------------------------------------------------------------
def _token_str(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class HFTokenizer(SimTokenizer):
    """A `tokenizer.json` directory loaded with the `tokenizers` package."""

    def __init__(self, directory: str | Path) -> None:
        from tokenizers import Tokenizer

        d = Path(directory)
        tok_file = d / "tokenizer.json"
        if not tok_file.is_file():
            raise TokenizerError(f"{d}: no tokenizer.json (--tokenizer must be a Hugging Face tokenizer directory)")
        self.path = d
        self._tok = Tokenizer.from_file(str(tok_file))
        cfg_file = d / "tokenizer_config.json"
        cfg: dict[str, Any] = {}
        if cfg_file.is_file():
            try:
                cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise TokenizerError(f"{cfg_file}: invalid JSON ({exc})") from exc
        template = cfg.get("chat_template")
        if isinstance(template, list):  # named templates: use "default"
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        jinja_file = d / "chat_template.jinja"
        if template is None and jinja_file.is_file():
            template = jinja_file.read_text(encoding="utf-8")
        self.chat_template: str | None = template
        self.bos_token = _token_str(cfg.get("bos_token"))
        self.eos_token = _token_str(cfg.get("eos_token"))
        self.eos_token_id = self._tok.token_to_id(self.eos_token) if self.eos_token else None
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self._special_ids = {i for i, t in self._tok.get_added_tokens_decoder().items() if t.special}
        self._compiled: Any = None
        self._filler: list[tuple[int, str]] | None = None

    def encode(self, text: str, *, add_special_tokens: bool = True) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int]) -> str:
        return str(self._tok.decode(ids, skip_special_tokens=True))

    def pieces(self, text: str) -> list[tuple[int, str]]:
        ids = self.encode(text, add_special_tokens=False)
        out: list[tuple[int, str]] = []
        prev = ""
        for n in range(1, len(ids) + 1):
            # Prefix-difference detokenization: correct across merges and multi-byte characters.
            cur = self._tok.decode(ids[:n], skip_special_tokens=False)
            out.append((ids[n - 1], cur[len(prev):] if cur.startswith(prev) else cur))
            prev = cur
        return out

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        if not self.chat_template:
            raise TokenizerError(f"{self.path}: the tokenizer has no chat_template; use /v1/completions")
        if self._compiled is None:
            from jinja2.exceptions import TemplateError
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message: str) -> None:
                raise TemplateError(message)

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = raise_exception
            env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
            self._compiled = env.from_string(self.chat_template)
        try:
            return str(self._compiled.render(
                messages=messages, add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token or "", eos_token=self.eos_token or "",
            ))
        except Exception as exc:  # a template error is the request's fault: report it as such
            raise TokenizerError(f"chat template failed: {exc}") from exc

    def filler(self) -> list[tuple[int, str]]:
        if self._filler is None:
            words: list[tuple[int, str]] = []
            for i in range(self.vocab_size):
                if i in self._special_ids:
                    continue
                s = self._tok.decode([i], skip_special_tokens=True)
                if len(s) >= 4 and s[0] == " " and s[1:].isalpha() and s[1:].isascii():
                    words.append((i, s))
                    if len(words) >= FILLER_SIZE:
                        break
            if not words:  # an exotic vocabulary: any non-empty, non-special token will do
                words = [(i, s) for i in range(self.vocab_size) if i not in self._special_ids
                         and (s := self._tok.decode([i], skip_special_tokens=True))][:FILLER_SIZE]
            if not words:
                raise TokenizerError(f"{self.path}: the vocabulary has no decodable ordinary token")
            self._filler = words
        return list(self._filler)


def content_text(content: Any) -> str:
    """OpenAI message content: a string, or a list of parts whose text parts are joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise TokenizerError("message content must be a string or a list of content parts")


def load_tokenizer(directory: str | None, *, vocab_size: int) -> SimTokenizer:
    """`HFTokenizer(directory)` when given, else the built-in tokenizer with the profile's vocab size."""
    return HFTokenizer(directory) if directory else BuiltinTokenizer(vocab_size)
