"""Helpers for the simulator tests: an in-process server and a tokenizer directory."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer

from infersweep.engines.sim.config import SimConfig
from infersweep.engines.sim.core import SimCore
from infersweep.engines.sim.server import SimServer

FIXTURE_TOKENIZER = Path(__file__).resolve().parents[1] / "fixtures" / "tokenizer"
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tokenizer_dir(tmp: Path) -> Path:
    """tests/fixtures/tokenizer when present, else a tiny byte-level BPE trained here (same file layout)."""
    if (FIXTURE_TOKENIZER / "tokenizer.json").is_file():
        return FIXTURE_TOKENIZER
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["Question: How many apples does Janet have? Answer: The answer is 42.",
              "the quick brown fox jumps over the lazy dog " * 3, "system user assistant hello world"] * 20
    tok.train_from_iterator(corpus, trainer)
    d = tmp / "tok"
    d.mkdir()
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": None, "eos_token": "<|im_end|>", "chat_template": CHATML}))
    return d


@contextlib.asynccontextmanager
async def sim_client(**cfg: Any) -> AsyncIterator[tuple[TestClient[Any, Any], SimServer]]:
    """A running simulator on a free port (fast: time scale 1000 unless given)."""
    cfg.setdefault("time_scale", 1000.0)
    cfg.setdefault("merge_late_steps", False)  # exact one-token-per-event framing whatever the machine load
    server = SimServer(SimCore(SimConfig(**cfg)))
    client: TestClient[Any, Any] = TestClient(TestServer(server.build_app(), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, server
    finally:
        await client.close()


def sse_events(body: str) -> list[Any]:
    """Parsed `data:` payloads of an SSE body ("[DONE]" kept as the string)."""
    out: list[Any] = []
    for block in body.split("\n\n"):
        if not block:
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: "):]
        out.append(payload if payload == "[DONE]" else orjson.loads(payload))
    return out
