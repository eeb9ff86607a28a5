"""Random dataset: exact lengths, no special tokens, InferenceX range-ratio semantics, chat mode."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from infersweep.bench.config import BenchConfig
from infersweep.bench.dataset import build_requests, sample_lengths, vllm_equivalent_range
from infersweep.bench.tokenizer import TokenizerError, load_tokenizer


def cfg(tokenizer_dir, **kw):
    base = {"base_url": "http://127.0.0.1:1", "model": "m", "tokenizer": str(tokenizer_dir),
            "isl": 64, "osl": 16, "conc": 2}  # fmt: skip
    return BenchConfig(**(base | kw))


def test_tokenizer_fixture_is_hf_format(tokenizer_dir):
    tok = load_tokenizer(str(tokenizer_dir))
    assert tok.vocab_size == 2048
    assert tok.special_ids == {0, 1, 2}
    rendered = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert rendered.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nhi<|im_end|>" in rendered


def test_completion_prompts_are_exact_token_id_lists(tokenizer_dir):
    c = cfg(tokenizer_dir, isl=100, osl=20)
    tok = load_tokenizer(str(tokenizer_dir))
    specs = build_requests(c, tok, 30)
    for s in specs:
        body = orjson.loads(s.body)
        assert len(body["prompt"]) == s.prompt_len == 100
        assert body["max_tokens"] == s.output_len == 20
        assert body["ignore_eos"] is True and body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}
        assert not set(body["prompt"]) & tok.special_ids
        assert all(0 <= t < tok.vocab_size for t in body["prompt"])
    prompts = {tuple(orjson.loads(s.body)["prompt"]) for s in specs}
    assert len(prompts) == 30  # distinct


def test_seeded_and_warmups_distinct(tokenizer_dir):
    c = cfg(tokenizer_dir)
    tok = load_tokenizer(str(tokenizer_dir))
    a = build_requests(c, tok, 5)
    assert [s.body for s in a] == [s.body for s in build_requests(c, tok, 5)]
    warm = build_requests(c, tok, 5, offset=5)
    assert not {s.body for s in a} & {s.body for s in warm}
    assert [s.index for s in warm] == [5, 6, 7, 8, 9]


def test_range_ratio_inferencex_semantics():
    rng = np.random.default_rng(0)
    x = sample_lengths(rng, 1024, 0.8, 20000)
    assert x.min() == 819 and x.max() == 1024  # [int(0.8*1024), 1024]: never above L (vLLM's would be)
    assert set(sample_lengths(rng, 1024, 1.0, 100)) == {1024}
    assert sample_lengths(rng, 3, 0.1, 50).min() >= 1
    assert vllm_equivalent_range(1024, 0.8) == (819, 1024)


def test_range_ratio_applies_to_both_lengths(tokenizer_dir):
    c = cfg(tokenizer_dir, isl=50, osl=40, random_range_ratio=0.5)
    specs = build_requests(c, load_tokenizer(str(tokenizer_dir)), 200)
    ins = {s.prompt_len for s in specs}
    outs = {s.output_len for s in specs}
    assert min(ins) >= 25 and max(ins) <= 50 and len(ins) > 5
    assert min(outs) >= 20 and max(outs) <= 40 and len(outs) > 5
    for s in specs:
        body = orjson.loads(s.body)
        assert len(body["prompt"]) == s.prompt_len and body["max_tokens"] == s.output_len


def test_chat_prompts_have_exact_templated_length(tokenizer_dir):
    c = cfg(tokenizer_dir, chat=True, isl=80, osl=8)
    tok = load_tokenizer(str(tokenizer_dir))
    for s in build_requests(c, tok, 10):
        body = orjson.loads(s.body)
        assert body["max_completion_tokens"] == 8
        text = tok.apply_chat_template(body["messages"])
        assert len(tok.encode(text)) == s.prompt_len == 80


def test_chat_isl_below_template_overhead_is_a_clear_error(tokenizer_dir):
    c = cfg(tokenizer_dir, chat=True, isl=3)
    with pytest.raises(TokenizerError, match="raise --isl"):
        build_requests(c, load_tokenizer(str(tokenizer_dir)), 1)


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(TokenizerError, match=r"tokenizer\.json"):
        load_tokenizer(str(tmp_path))
