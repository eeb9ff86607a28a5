"""Load a tokenizer (tokenizer.json via the `tokenizers` package) and its chat template, off the hot path."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from infersweep.faults.errors import InfersweepError


class TokenizerError(InfersweepError, ValueError):
    """The tokenizer directory or repo cannot be used; the message names the path and the fix."""

    kind = "config_error"
    transient = False


@dataclass(frozen=True)
class LoadedTokenizer:
    """A fast tokenizer plus the pieces of tokenizer_config.json the benchmark needs."""

    source: str
    tokenizer: Tokenizer
    config: dict[str, Any]
    chat_template: str | None

    @cached_property
    def special_ids(self) -> frozenset[int]:
        """Ids of every added token (special or not): never used in random prompts."""
        return frozenset(self.tokenizer.get_added_tokens_decoder().keys())

    @property
    def vocab_size(self) -> int:
        """Vocabulary size including added tokens."""
        return int(self.tokenizer.get_vocab_size(with_added_tokens=True))

    def allowed_ids(self) -> list[int]:
        """Token ids a random prompt may use: the whole vocabulary minus added/special tokens."""
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        return sorted(i for i in set(vocab.values()) if i not in self.special_ids)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without adding BOS/EOS (what a server does to a chat-templated prompt)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: list[int]) -> str:
        """Text for ``ids`` (special tokens skipped)."""
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render the chat template the way transformers does (sandboxed jinja2, trim/lstrip blocks)."""
        if not self.chat_template:
            raise TokenizerError(
                f"{self.source}: tokenizer_config.json has no chat_template; chat mode needs one "
                "(add 'chat_template' or a chat_template.jinja file, or drop --chat)"
            )
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TokenizerError(f"{self.source}: chat template error: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        tmpl = env.from_string(self.chat_template)
        specials = {
            k: _token_str(self.config.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")
        }
        return tmpl.render(messages=messages, add_generation_prompt=add_generation_prompt, **specials)


def _token_str(value: Any) -> str:
    if isinstance(value, dict):  # serialized AddedToken
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def _resolve_dir(source: str) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/", "~")):
        raise TokenizerError(f"tokenizer {source!r}: not a directory; pass a folder holding tokenizer.json")
    try:  # a hub repo id; honours HF_HUB_OFFLINE and the local cache
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                source,
                allow_patterns=["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"],
                etag_timeout=30,
            )
        )
    except Exception as exc:
        raise TokenizerError(
            f"tokenizer {source!r}: not a local directory and the hub download failed ({exc}); "
            "pass a local folder with tokenizer.json"
        ) from exc


def load_tokenizer(source: str) -> LoadedTokenizer:
    """Load ``source`` (a directory with tokenizer.json, or a hub repo id) with its chat template."""
    root = _resolve_dir(source)
    tok_file = root / "tokenizer.json"
    if not tok_file.is_file():
        raise TokenizerError(
            f"{tok_file}: missing; infersweep needs a fast tokenizer (tokenizer.json). Convert a slow "
            "tokenizer once with transformers' AutoTokenizer(...).save_pretrained(dir)"
        )
    try:
        tokenizer = Tokenizer.from_file(str(tok_file))
    except Exception as exc:
        raise TokenizerError(f"{tok_file}: cannot be loaded by the tokenizers package: {exc}") from exc
    config: dict[str, Any] = {}
    cfg_file = root / "tokenizer_config.json"
    if cfg_file.is_file():
        try:
            config = json.loads(cfg_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise TokenizerError(f"{cfg_file}: invalid JSON ({exc}); fix or remove the file") from exc
    template = config.get("chat_template")
    if isinstance(template, list):  # named templates: transformers uses "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    jinja_file = root / "chat_template.jinja"
    if not template and jinja_file.is_file():
        template = jinja_file.read_text(encoding="utf-8")
    return LoadedTokenizer(source=str(source), tokenizer=tokenizer, config=config, chat_template=template)
