"""The simulator's tokenizers: the documented built-in rule, and a Hugging Face tokenizer directory."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from infersweep.engines.sim.tokenizer import BuiltinTokenizer, HFTokenizer, TokenizerError, load_tokenizer

from .sim_helpers import tokenizer_dir


def test_builtin_rule_is_the_documented_one() -> None:
    tok = BuiltinTokenizer(vocab_size=32000)
    text = "Hello, world  12345 foo_bar!"
    pieces = tok.pieces(text)
    assert "".join(p for _, p in pieces) == text
    assert [p for _, p in pieces] == ["Hello", ",", " world", " ", " 123", "45", " foo", "_", "bar", "!"]
    assert [i for i, _ in pieces] == [3 + zlib.crc32(p.encode()) % (32000 - 3) for _, p in pieces]
    assert tok.encode(text) == [i for i, _ in pieces]  # no BOS


def test_builtin_chat_is_chatml_with_single_token_markers() -> None:
    tok = BuiltinTokenizer(vocab_size=32000)
    msgs = [{"role": "user", "content": "Hi"}]
    assert tok.render_chat(msgs) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    ids = tok.encode_chat(msgs)
    assert ids[0] == 1 and ids.count(1) == 2 and ids.count(2) == 1 and len(ids) == 9


def test_builtin_filler_words_are_single_tokens() -> None:
    tok = BuiltinTokenizer(vocab_size=32000)
    filler = tok.filler()
    assert len(filler) == 512 and len({w for _, w in filler}) == 512
    for i, w in filler[:50]:
        assert tok.encode(w) == [i]
        assert tok.decode([i]) == w


def test_hf_tokenizer_directory(tmp_path: Path) -> None:
    tok = load_tokenizer(str(tokenizer_dir(tmp_path)), vocab_size=1)
    assert isinstance(tok, HFTokenizer)
    text = "Question: How many apples does Janet have?"
    assert "".join(p for _, p in tok.pieces(text)) == text
    assert [i for i, _ in tok.pieces(text)] == tok.encode(text, add_special_tokens=False)
    rendered = tok.render_chat([{"role": "user", "content": "hello"}])
    assert "hello" in rendered
    words = tok.filler()
    assert words and all(tok.decode([i]) == w for i, w in words[:20])


def test_bad_tokenizer_directory(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match=r"no tokenizer.json"):
        HFTokenizer(tmp_path)
