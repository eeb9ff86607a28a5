"""Random dataset: exact lengths, no special tokens, InferenceX range-ratio semantics, chat mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from infersweep.bench.config import BenchConfig
from infersweep.bench.dataset import build_requests, sample_lengths, vllm_equivalent_range
from infersweep.bench.tokenizer import TokenizerError, load_tokenizer

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "inferencex-1ef98e3ed"


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


def test_client_templated_prompts_are_exact_ids_of_the_rendered_template(tokenizer_dir):
    """InferenceX's --use-chat-template: the client renders the template and posts to /v1/completions; ours
    sends the rendered prompt's ids, template included, at exactly ISL tokens."""
    c = cfg(tokenizer_dir, prompt_template="tokenizer", isl=90, osl=8)
    tok = load_tokenizer(str(tokenizer_dir))
    im_start = tok.tokenizer.token_to_id("<|im_start|>")
    assert c.endpoint == "/v1/completions"
    for s in build_requests(c, tok, 10):
        body = orjson.loads(s.body)
        assert "messages" not in body and body["max_tokens"] == 8
        assert len(body["prompt"]) == s.prompt_len == 90
        text = tok.decode(body["prompt"])
        assert body["prompt"][0] == im_start  # the template's own special tokens are there, as ids
        assert tok.encode(tok.apply_chat_template([{"role": "user", "content": _user_turn(tok, body["prompt"])}])) \
            == body["prompt"], text


def _user_turn(tok, ids):
    """The user content inside a rendered ChatML prompt (special tokens kept)."""
    rendered = tok.tokenizer.decode(ids, skip_special_tokens=False)
    return rendered.split("<|im_start|>user\n", 1)[1].split("<|im_end|>", 1)[0]


def test_dsv4_framing_matches_inferencex_encoder(tokenizer_dir):
    """`--dsv4`: DeepSeek-V4's framing of one user turn, checked against InferenceX's own encoder."""
    from infersweep.bench.dataset import DSV4_USER_TURN, render_prompt

    ref = REFERENCE / "utils" / "bench_serving" / "encoding_dsv4.py"
    if not ref.is_file():
        pytest.skip(f"InferenceX reference encoder not found at {ref} (../shared absent)")
    import importlib.util

    spec = importlib.util.spec_from_file_location("ix_encoding_dsv4", ref)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tok = load_tokenizer(str(tokenizer_dir))
    for content in ("hello world", "", "multi\nline ✓"):
        want = mod.encode_messages([{"role": "user", "content": content}], thinking_mode="thinking")
        assert render_prompt(tok, content, "dsv4") == want == DSV4_USER_TURN.format(content=content)
    c = cfg(tokenizer_dir, prompt_template="dsv4", isl=70, osl=4)
    for s in build_requests(c, tok, 5):
        assert len(orjson.loads(s.body)["prompt"]) == s.prompt_len == 70


def test_chat_and_client_template_are_exclusive(tokenizer_dir):
    with pytest.raises(ValueError, match="choose one"):
        cfg(tokenizer_dir, chat=True, prompt_template="tokenizer")
