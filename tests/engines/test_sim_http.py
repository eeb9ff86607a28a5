"""The simulator's HTTP surface, in-process on a free port."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from infersweep.engines.sim.tokenizer import BuiltinTokenizer, HFTokenizer

from .sim_helpers import sim_client, sse_events, tokenizer_dir


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_stream_completion_with_token_ids_is_exact() -> None:
    async def main() -> None:
        async with sim_client() as (client, server):
            r = await client.post("/v1/completions", json={
                "model": "meta-llama/Llama-3.1-8B-Instruct", "prompt": list(range(100, 228)), "max_tokens": 64,
                "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}})
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            assert r.headers["x-infersweep-sim-time-scale"] == "1000.0"
            events = sse_events(await r.text())
            assert events[-1] == "[DONE]"
            usage_chunk = events[-2]
            assert usage_chunk["choices"] == []
            assert usage_chunk["usage"] == {"prompt_tokens": 128, "total_tokens": 192, "completion_tokens": 64}
            tokens = events[:-2]
            assert len(tokens) == 64  # one token per event
            assert all(e["object"] == "text_completion" and e["usage"] is None for e in tokens)
            assert all(e["choices"][0]["text"] for e in tokens)
            assert [e["choices"][0]["finish_reason"] for e in tokens] == [None] * 63 + ["length"]
            assert len({e["id"] for e in events[:-1]}) == 1
            assert server.engine.scheduler.generation_tokens_total == 64
    run(main())


def test_non_stream_completion_text_prompt_counts_with_the_tokenizer() -> None:
    prompt = "The capital of France is, as everyone knows, Paris."

    async def main() -> None:
        async with sim_client() as (client, _server):
            r = await client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 7})
            body = await r.json()
            assert body["usage"] == {"prompt_tokens": len(BuiltinTokenizer(128256).encode(prompt)),
                                     "total_tokens": body["usage"]["prompt_tokens"] + 7, "completion_tokens": 7}
            assert body["choices"][0]["finish_reason"] == "length" and body["object"] == "text_completion"
            tok = await (await client.post("/tokenize", json={"prompt": prompt})).json()
            assert tok["count"] == body["usage"]["prompt_tokens"]
    run(main())


def test_chat_stream_role_first_and_continuous_usage() -> None:
    async def main() -> None:
        async with sim_client() as (client, _):
            r = await client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "Hi there"}], "max_tokens": 5, "stream": True,
                "stream_options": {"include_usage": True, "continuous_usage_stats": True}})
            events = sse_events(await r.text())
            assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            content = events[1:-2]
            assert len(content) == 5
            assert [e["usage"]["completion_tokens"] for e in content] == [1, 2, 3, 4, 5]
            assert content[-1]["choices"][0]["finish_reason"] == "length"
            assert all(e["object"] == "chat.completion.chunk" for e in events[:-1])
            assert events[-2]["usage"]["completion_tokens"] == 5 and events[-1] == "[DONE]"
            bad = await client.post("/v1/chat/completions", json={"messages": [{"content": "no role"}]})
            assert bad.status == 400 and "role" in (await bad.json())["error"]["message"]
            r = await client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "Hi there"}], "max_completion_tokens": 3})
            body = await r.json()
            assert body["choices"][0]["message"]["role"] == "assistant" and body["usage"]["completion_tokens"] == 3
            tok = await (await client.post("/tokenize", json={"messages": [{"role": "user", "content": "Hi there"}]})).json()
            assert tok["count"] == body["usage"]["prompt_tokens"]
    run(main())


def test_stream_interval_batches_tokens() -> None:
    async def main() -> None:
        async with sim_client(stream_interval=4) as (client, _):
            r = await client.post("/v1/completions", json={
                "prompt": [5, 6, 7], "max_tokens": 10, "stream": True, "stream_options": {"include_usage": True}})
            events = sse_events(await r.text())
            # first token alone, then groups of 4, the remainder with the finish reason
            assert len(events) == 2 + 2 + 2 and events[-2]["usage"]["completion_tokens"] == 10
    run(main())


@pytest.mark.parametrize("body, status, fragment", [
    ({"prompt": [1, 2], "max_tokens": 200_000}, 400, "maximum context length"),
    ({"prompt": [10**9], "max_tokens": 2}, 400, "out of vocabulary"),
    ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream=True"),
    ({"prompt": "x", "model": "other"}, 404, "does not exist"),
    ({"prompt": "x", "n": 2}, 400, "n=1"),
    ({"max_tokens": 2}, 400, "prompt is required"),
    ({"prompt": "x", "min_tokens": "many"}, 400, "min_tokens"),
])
def test_bad_requests_get_vllm_style_errors(body: dict[str, Any], status: int, fragment: str) -> None:
    async def main() -> None:
        async with sim_client() as (client, _):
            r = await client.post("/v1/completions", json=body)
            assert r.status == status
            assert fragment in (await r.json())["error"]["message"]
    run(main())


def test_info_endpoints_label_the_sim() -> None:
    async def main() -> None:
        async with sim_client(model="served-x", model_profile="minimax-m3", gpu_profile="h200", tp=8,
                              time_scale=5.0) as (client, _):
            assert (await client.get("/health")).status == 200
            v = await (await client.get("/version")).json()
            assert v["engine"] == "sim" and v["version"].startswith("sim-") and v["time_scale"] == 5.0
            assert (v["model_profile"], v["gpu_profile"], v["tp"]) == ("minimax-m3", "h200", 8)
            models = await (await client.get("/v1/models")).json()
            card = models["data"][0]
            assert card["id"] == "served-x" and card["root"] == "MiniMaxAI/MiniMax-M3" and card["engine"] == "sim"
            await client.post("/v1/completions", json={"prompt": "a b c", "max_tokens": 2})
            text = await (await client.get("/metrics")).text()
            for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
                         "vllm:kv_cache_usage_perc", "vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
                assert f'{name}{{model_name="served-x"}}' in text
            assert 'vllm:generation_tokens_total{model_name="served-x"} 2' in text
            assert 'sim:gpu_power_watts{gpu="7",simulated="true"}' in text
            assert "sim:time_scale 5.0" in text and "sim:scheduler_lag_seconds_count" in text
    run(main())


def test_hf_tokenizer_chat_template_and_answer_key(tmp_path: Path) -> None:
    tdir = tokenizer_dir(tmp_path)
    tok = HFTokenizer(tdir)
    key = tmp_path / "key.jsonl"
    questions = [f"How many apples does Janet have in basket {i}?" for i in range(10)]
    key.write_text("\n".join(json.dumps({"question": q, "answer": str(i + 40)}) for i, q in enumerate(questions)))

    async def main() -> None:
        async with sim_client(tokenizer=str(tdir), answer_key=str(key), accuracy=0.5) as (client, _):
            finals = []
            for i, q in enumerate(questions):
                msgs = [{"role": "user", "content": f"Question: {q}\nAnswer:"}]
                body = await (await client.post("/v1/chat/completions",
                                                 json={"messages": msgs, "max_tokens": 200})).json()
                text = body["choices"][0]["message"]["content"]
                assert body["choices"][0]["finish_reason"] == "stop"
                assert body["usage"]["prompt_tokens"] == len(tok.encode_chat(msgs))
                # EOS counts as a generated token, as in vLLM; its text is empty.
                assert body["usage"]["completion_tokens"] == len(tok.pieces(text)) + 1
                finals.append(text.rsplit("#### ", 1)[1] == str(i + 40))
            assert sum(finals) == 5
            # ignore_eos keeps generating past the scripted reply
            msgs = [{"role": "user", "content": f"Question: {questions[0]}\nAnswer:"}]
            body = await (await client.post("/v1/chat/completions", json={
                "messages": msgs, "max_tokens": 120, "ignore_eos": True})).json()
            assert body["usage"]["completion_tokens"] == 120 and body["choices"][0]["finish_reason"] == "length"
    run(main())


def test_many_concurrent_streams_all_complete_exactly() -> None:
    async def main() -> None:
        async with sim_client(max_num_seqs=64) as (client, server):
            async def one(i: int) -> int:
                r = await client.post("/v1/completions", json={
                    "prompt": [7] * (10 + i), "max_tokens": 20, "stream": True, "ignore_eos": True,
                    "stream_options": {"include_usage": True}})
                events = sse_events(await r.text())
                assert events[-2]["usage"]["prompt_tokens"] == 10 + i
                return events[-2]["usage"]["completion_tokens"]
            counts = await asyncio.gather(*(one(i) for i in range(100)))
            assert counts == [20] * 100
            assert server.engine.scheduler.free_blocks == server.engine.scheduler.config.num_blocks
    run(main())


def test_client_disconnect_aborts_and_frees_the_kv_cache() -> None:
    async def main() -> None:
        async with sim_client(time_scale=1.0) as (client, server):
            sched = server.engine.scheduler
            r = await client.post("/v1/completions", json={
                "prompt": [3] * 64, "max_tokens": 5000, "ignore_eos": True, "stream": True})
            await r.content.readuntil(b"\n\n")  # the first token arrived
            assert sched.free_blocks < sched.config.num_blocks
            r.close()  # drop the connection mid-stream
            for _ in range(500):
                if not sched.has_work:
                    break
                await asyncio.sleep(0.01)
            assert not sched.has_work
            assert sched.free_blocks == sched.config.num_blocks
            assert server.requests_finished.get("abort") == 1
    run(main())


class _Capture:
    def __init__(self) -> None:
        self.data = b""

    def is_closing(self) -> bool:
        return False

    def write(self, b: bytes) -> None:
        self.data += b


def test_late_steps_merge_into_one_event_per_stream() -> None:
    from infersweep.engines.sim.config import SimConfig
    from infersweep.engines.sim.core import SimCore
    from infersweep.engines.sim.server import SimServer

    async def main() -> None:
        server = SimServer(SimCore(SimConfig()))
        eng, sched = server.engine, server.engine.scheduler
        cap = _Capture()
        req = eng.new_request({"prompt": [1, 2, 3], "max_tokens": 5, "ignore_eos": True, "stream": True,
                               "stream_options": {"include_usage": True}}, "completion", asyncio.get_running_loop())
        req.payload.transport, req.payload.chunked = cap, False
        eng.prepare_stream(req.payload)
        sched.add(req)
        steps = [sched.step() for _ in range(3)]
        server._deliver_merged(steps)  # three due steps: one event with three tokens
        server._deliver_merged([sched.step(), sched.step()])
        events = sse_events(cap.data.decode())
        assert len(events) == 4 and events[-1] == "[DONE]"
        texts = [e["choices"][0]["text"] for e in events[:2]]
        assert [len(t.split()) for t in texts] == [3, 2]
        assert events[1]["choices"][0]["finish_reason"] == "length"
        assert events[2]["usage"]["completion_tokens"] == 5
    run(main())


def test_a_dead_engine_loop_fails_requests_and_health() -> None:
    async def main() -> None:
        async with sim_client(time_scale=1.0) as (client, server):
            def boom() -> None:
                raise ZeroDivisionError("injected engine bug")

            server.engine.scheduler.step = boom  # type: ignore[method-assign]
            r = await client.post("/v1/completions", json={"prompt": "hi", "max_tokens": 3})
            assert r.status == 500 and "engine died" in (await r.json())["error"]["message"]
            assert (await client.get("/health")).status == 500
            assert "ZeroDivisionError" in (server.engine_error or "")
    run(main())
