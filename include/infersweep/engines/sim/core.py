"""The simulated engine core: validated requests in, scheduler requests out, SSE bytes back.

No HTTP and no wall clock here: `SimCore` owns the scheduler, the tokenizer, the answer key and the
pre-encoded byte templates of the OpenAI/vLLM stream format; `server.py` drives it on the wall clock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from infersweep import __version__
from infersweep.engines.sim import SIM_VERSION
from infersweep.engines.sim.answers import AnswerKey
from infersweep.engines.sim.config import SimConfig
from infersweep.engines.sim.kv_transfer import KvLink, KvTransferModel
from infersweep.engines.sim.profiles import get_gpu_profile, get_model_profile
from infersweep.engines.sim.roofline import GIB, Efficiency, Roofline, Topology
from infersweep.engines.sim.scheduler import Scheduler, SchedulerConfig, SimRequest, kv_received
from infersweep.engines.sim.tokenizer import (
    HFTokenizer,
    SimTokenizer,
    TokenizerError,
    content_text,
    load_tokenizer,
)

#: What follows the text value of an ordinary (not last, no usage) token event.
COMPLETION_TAIL = b',"logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}\n\n'
CHAT_TAIL = b'},"logprobs":null,"finish_reason":null}]}\n\n'

KV_OOM_MESSAGE = (
    "ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` "
    "when initializing the engine."
)


class StartupError(RuntimeError):
    """The simulated engine cannot start (the message mirrors vLLM's)."""


class RequestError(ValueError):
    """A bad request (HTTP 400, vLLM's error shape)."""


@dataclass(eq=False, slots=True)
class Stream:
    """Per-request output state, attached to `SimRequest.payload`."""

    kind: str  # "completion" | "chat"
    rid: str
    created: int
    prompt_len: int
    pieces: list[tuple[int, str]]  # scripted reply tokens (answer key), may be empty
    eos_at: int | None  # output index of the EOS token (None: never)
    filler_offset: int
    stream: bool
    include_usage: bool
    continuous_usage: bool
    done: asyncio.Future[None]
    transport: Any = None
    chunked: bool = True
    head: bytes = b""  # event bytes up to the chunk's choices list
    text_head: bytes = b""  # head + the choice up to the text value (fast path)
    pending: list[int] = field(default_factory=list)  # output indices not yet streamed
    text_parts: list[str] = field(default_factory=list)  # non-stream: accumulated text
    chat_started: bool = False
    failed: bool = False
    finished: bool = False  # counted in the metrics (the future may be cancelled with its handler)
    kv_params: dict[str, Any] | None = None  # disaggregated: kv_transfer_params (see router.py)


class SimCore:
    """Scheduler, tokenizer and output formatting for one served model (no HTTP)."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.profile = get_model_profile(cfg.model_profile)
        self.gpu = get_gpu_profile(cfg.gpu_profile)
        try:
            self.topology = Topology(tp=cfg.tp, ep=cfg.ep, dp=cfg.dp, pp=cfg.pp, dcp=cfg.dcp, pcp=cfg.pcp)
        except ValueError as exc:
            raise StartupError(f"ValueError: {exc}") from exc
        self.roofline = Roofline(
            self.profile, self.gpu, self.topology, precision=cfg.precision, kv_dtype_bytes=cfg.kv_dtype_bytes,
            efficiency=Efficiency(step_overhead_s=cfg.step_overhead_ms / 1000.0),
        )
        if cfg.fail_at_start == "kv-oom":
            raise StartupError(KV_OOM_MESSAGE)
        #: Fraction of GPU memory the engine budgets for weights + KV (TRT's free-memory fraction converted).
        self.gpu_memory_utilization = cfg.gpu_memory_utilization
        if cfg.kv_free_gpu_memory_fraction is not None:
            mem = self.gpu.memory_gb * 1e9
            used = self.roofline.weight_bytes_per_gpu + self.roofline.eff.activation_reserve_gib * GIB
            self.gpu_memory_utilization = min(1.0, (used + cfg.kv_free_gpu_memory_fraction * max(0.0, mem - used))
                                              / mem)
        blocks_per_rank = self.roofline.num_kv_blocks(self.gpu_memory_utilization, cfg.block_size)
        if blocks_per_rank <= 0:
            raise StartupError(KV_OOM_MESSAGE)
        capacity = blocks_per_rank * cfg.block_size
        if cfg.max_model_len is None:
            self.max_model_len = min(self.profile.max_position_embeddings, capacity)
        else:
            self.max_model_len = cfg.max_model_len
            if self.max_model_len > capacity:
                per_tok = self.roofline.kv_bytes_per_token_gpu
                raise StartupError(
                    f"ValueError: To serve at least one request with the models's max seq len "
                    f"({self.max_model_len}), ({self.max_model_len * per_tok / GIB:.2f} GiB KV cache is needed, "
                    f"which is larger than the available KV cache memory ({capacity * per_tok / GIB:.2f} GiB). "
                    f"Based on the available memory, the estimated maximum model length is {capacity}. Try "
                    "increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine."
                )
        self.kv_capacity_tokens = capacity * cfg.dp
        dp = cfg.dp
        self.scheduler = Scheduler(
            SchedulerConfig(
                max_num_seqs=cfg.max_num_seqs * dp, max_num_batched_tokens=cfg.max_num_batched_tokens * dp,
                num_blocks=blocks_per_rank * dp, block_size=cfg.block_size,
                enable_chunked_prefill=cfg.enable_chunked_prefill,
            ),
            self.roofline,
            noise=cfg.noise,
        )
        self.tokenizer: SimTokenizer = load_tokenizer(cfg.tokenizer, vocab_size=self.profile.vocab_size)
        self.vocab_size = self.tokenizer.vocab_size
        self.answer_key = (
            AnswerKey.from_jsonl(cfg.answer_key, cfg.accuracy, cfg.answer_seed) if cfg.answer_key else None
        )
        self.served_name = cfg.model or self.profile.hf_id
        #: A prefill worker's outgoing KV link (None for aggregated and decode workers).
        self.kv_link = KvLink(KvTransferModel.build(self.roofline, self.gpu.name, engine=cfg.kv_transfer,
                                                    link=cfg.kv_link)) if cfg.role == "prefill" else None
        self.created = int(time.time())
        self._filler = self.tokenizer.filler()
        self._filler_json = [orjson.dumps(text) for _, text in self._filler]
        self._name_json = orjson.dumps(self.served_name).decode()
        self._next = 0

    # --- request building ----------------------------------------------------------------------
    def _prompt_ids(self, prompt: Any) -> tuple[list[int], str | None]:
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]  # a batch of one
        if isinstance(prompt, str):
            return self.tokenizer.encode(prompt, add_special_tokens=True), prompt
        if isinstance(prompt, list) and prompt and all(type(t) is int for t in prompt):
            bad = next((t for t in prompt if not 0 <= t < self.vocab_size), None)
            if bad is not None:
                raise RequestError(f"Token id {bad} is out of vocabulary (vocab size {self.vocab_size})")
            return list(prompt), None
        if isinstance(prompt, list) and len(prompt) > 1:
            raise RequestError("batched prompts are not supported by the simulator; send one prompt per request")
        raise RequestError("prompt must be a non-empty string or a list of token ids")

    def new_request(self, body: dict[str, Any], kind: str, loop: asyncio.AbstractEventLoop) -> SimRequest:
        """Validate an OpenAI request body and build the scheduler request (raises RequestError)."""
        if body.get("n", 1) != 1:
            raise RequestError("the simulator supports n=1 only")
        if body.get("echo"):
            raise RequestError("echo is not supported by the simulator")
        stream = bool(body.get("stream", False))
        opts = body.get("stream_options")
        if opts is not None and not stream:
            raise RequestError("Stream options can only be defined when `stream=True`.")
        opts = opts or {}
        if not isinstance(opts, dict):
            raise RequestError("stream_options must be an object")
        if kind == "chat":
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
                raise RequestError("messages must be a non-empty list of objects with a string `role`")
            msgs = [{**m, "content": content_text(m.get("content"))} for m in messages]
            try:
                ids = self.tokenizer.encode_chat(
                    msgs, add_generation_prompt=bool(body.get("add_generation_prompt", True)))
            except TokenizerError as exc:
                raise RequestError(str(exc)) from exc
            question_text: str | None = "\n".join(m["content"] for m in msgs)
            max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        else:
            if "prompt" not in body:
                raise RequestError("prompt is required")
            ids, question_text = self._prompt_ids(body["prompt"])
            if question_text is None and self.answer_key is not None and isinstance(self.tokenizer, HFTokenizer):
                # Token-id prompts: only a real tokenizer can turn them back into the question text.
                question_text = self.tokenizer.decode(ids)
            max_tokens = body.get("max_tokens", 16)
        prompt_len = len(ids)
        if prompt_len == 0:
            raise RequestError("the prompt is empty")
        if max_tokens is None:
            max_tokens = self.max_model_len - prompt_len
        if type(max_tokens) is not int or max_tokens < 1:
            raise RequestError("max_tokens must be a positive integer")
        if prompt_len + max_tokens > self.max_model_len:
            raise RequestError(
                f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                f"{prompt_len + max_tokens} tokens ({prompt_len} in the messages, {max_tokens} in the "
                "completion). Please reduce the length of the messages or completion."
            )
        kv_params = self._kv_params(body, prompt_len, stream) if self.cfg.role != "aggregated" else None
        if self.cfg.role == "prefill":
            max_tokens = 1  # a prefill worker computes the prompt and the first token, then hands over
        ignore_eos = bool(body.get("ignore_eos", False))
        min_tokens = body.get("min_tokens") or 0
        if type(min_tokens) is not int or min_tokens < 0:
            raise RequestError("min_tokens must be a non-negative integer")
        pieces: list[tuple[int, str]] = []
        if self.answer_key is not None and question_text is not None:
            reply = self.answer_key.reply(question_text)
            if reply is not None:
                pieces = self.tokenizer.pieces(reply)
        eos_at = None if ignore_eos or not pieces else max(len(pieces), min_tokens - 1)
        self._next += 1
        prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
        st = Stream(
            kind=kind, rid=prefix + uuid.uuid4().hex, created=int(time.time()), prompt_len=prompt_len,
            pieces=pieces, eos_at=eos_at, filler_offset=(self._next * 7919 + self.cfg.seed) % len(self._filler),
            stream=stream, include_usage=bool(opts.get("include_usage", False)),
            continuous_usage=bool(opts.get("continuous_usage_stats", False)), done=loop.create_future(),
            kv_params=kv_params,
        )
        if self.cfg.role == "decode":
            return kv_received(self._next, prompt_len, max_tokens, 0.0,
                               stop_after=None if eos_at is None else eos_at + 1, payload=st)
        return SimRequest(
            rid=self._next, prompt_len=prompt_len, max_tokens=max_tokens, arrival=0.0,
            stop_after=None if eos_at is None else eos_at + 1, payload=st,
        )

    def _kv_params(self, body: dict[str, Any], prompt_len: int, stream: bool) -> dict[str, Any]:
        """Validate the `kv_transfer_params` a router sends a prefill or decode worker (vLLM's P/D protocol)."""
        params = body.get("kv_transfer_params")
        role = self.cfg.role
        if not isinstance(params, dict):
            raise RequestError(f"this is a {role} worker (--role {role}): requests come from `infersweep sim "
                               "router`, with kv_transfer_params")
        if role == "prefill":
            if params.get("do_remote_decode") is not True:
                raise RequestError("a prefill worker needs kv_transfer_params.do_remote_decode = true")
            if stream:
                raise RequestError("a prefill worker answers once the KV has been sent: stream must be false")
        else:
            if params.get("do_remote_prefill") is not True:
                raise RequestError("a decode worker needs kv_transfer_params.do_remote_prefill = true (the "
                                   "prefill worker's reply)")
            sent = params.get("prompt_tokens")
            if sent is not None and sent != prompt_len:
                raise RequestError(f"the prefill worker computed {sent} prompt tokens but this prompt has "
                                   f"{prompt_len}: prefill and decode workers must share the tokenizer")
        return params

    # --- output formatting ---------------------------------------------------------------------
    def token_text(self, st: Stream, i: int) -> str:
        """Text of output token i (EOS is empty, as vLLM skips it in text)."""
        if i < len(st.pieces):
            return st.pieces[i][1]
        if st.eos_at is not None and i == st.eos_at:
            return ""
        return self._filler[(st.filler_offset + i) % len(self._filler)][1]

    def _text_json(self, st: Stream, indices: list[int]) -> bytes:
        if len(indices) == 1:
            i = indices[0]
            if i >= len(st.pieces) and (st.eos_at is None or i != st.eos_at):
                return self._filler_json[(st.filler_offset + i) % len(self._filler)]
        return orjson.dumps("".join(self.token_text(st, i) for i in indices))

    def stream_head(self, st: Stream) -> bytes:
        """The bytes every chunk of this request starts with (pre-encoded once)."""
        obj = "text_completion" if st.kind == "completion" else "chat.completion.chunk"
        return (f'data: {{"id":"{st.rid}","object":"{obj}","created":{st.created},'
                f'"model":{self._name_json},"choices":[').encode()

    def prepare_stream(self, st: Stream) -> None:
        """Pre-encode the byte templates of this request's events."""
        st.head = self.stream_head(st)
        st.text_head = st.head + (b'{"index":0,"text":' if st.kind == "completion" else b'{"index":0,"delta":{"content":')

    def usage(self, st: Stream, completion: int) -> dict[str, Any]:
        return {"prompt_tokens": st.prompt_len, "total_tokens": st.prompt_len + completion,
                "completion_tokens": completion}

    def chunk(self, st: Stream, indices: list[int], finish_reason: str | None, completion: int) -> bytes:
        """One SSE event carrying the text of output tokens `indices`."""
        text = self._text_json(st, indices)
        fr = b"null" if finish_reason is None else b'"' + finish_reason.encode() + b'"'
        usage = orjson.dumps(self.usage(st, completion)) if st.continuous_usage else None
        if st.kind == "completion":
            body = (b'{"index":0,"text":' + text + b',"logprobs":null,"finish_reason":' + fr
                    + b',"stop_reason":null}],"usage":' + (usage or b"null") + b"}\n\n")
        else:
            stop = b',"stop_reason":null' if finish_reason is not None else b""
            body = (b'{"index":0,"delta":{"content":' + text + b'},"logprobs":null,"finish_reason":' + fr
                    + stop + b"}]" + (b',"usage":' + usage if usage else b"") + b"}\n\n")
        return st.head + body

    def role_chunk(self, st: Stream) -> bytes:
        usage = b',"usage":' + orjson.dumps(self.usage(st, 0)) if st.continuous_usage else b""
        return (st.head + b'{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
                b'"finish_reason":null}]' + usage + b"}\n\n")

    def final_chunks(self, st: Stream, completion: int) -> bytes:
        """The usage chunk (when asked for) and `[DONE]`."""
        out = b""
        if st.include_usage:
            out = st.head + b'],"usage":' + orjson.dumps(self.usage(st, completion)) + b"}\n\n"
        return out + b"data: [DONE]\n\n"

    def full_response(self, req: SimRequest) -> dict[str, Any]:
        """The non-stream response body."""
        st: Stream = req.payload
        text = "".join(st.text_parts)
        usage = self.usage(st, req.num_output)
        if st.kind == "completion":
            choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None,
                                      "finish_reason": req.finish_reason, "stop_reason": None}
            obj = "text_completion"
        else:
            choice = {"index": 0, "message": {"role": "assistant", "content": text, "reasoning_content": None,
                                               "tool_calls": []},
                      "logprobs": None, "finish_reason": req.finish_reason, "stop_reason": None}
            obj = "chat.completion"
        out = {"id": st.rid, "object": obj, "created": st.created, "model": self.served_name,
               "choices": [choice], "usage": usage}
        if self.kv_link is not None and st.kv_params is not None:
            out["kv_transfer_params"] = st.kv_params  # the prefill worker's handle for the decode worker
        return out

    # --- info ----------------------------------------------------------------------------------
    def version_info(self) -> dict[str, Any]:
        """`/version`: names the sim, its version, the time scale and the modelled hardware."""
        cfg = self.cfg
        flavor = {} if cfg.flavor == "vllm" else {"flavor": cfg.flavor}  # vLLM's /version stays as it was
        return {
            "version": f"sim-{__version__}", **flavor, "engine": "sim", "sim_version": SIM_VERSION,
            "infersweep_version": __version__, "time_scale": cfg.time_scale,
            "model_profile": self.profile.name, "gpu_profile": self.gpu.name, "precision": self.roofline.precision,
            "tp": cfg.tp, "ep": cfg.ep, "dp": cfg.dp, "pp": cfg.pp, "dcp": cfg.dcp, "pcp": cfg.pcp,
            "max_model_len": self.max_model_len,
            "kv_cache_tokens": self.kv_capacity_tokens, "max_num_seqs": cfg.max_num_seqs,
            "max_num_batched_tokens": cfg.max_num_batched_tokens, "tokenizer": cfg.tokenizer or "builtin",
            "ignored_vllm_flags": list(cfg.ignored_flags),
            # Only when on, so a noiseless server's /version is exactly what it was.
            **({"noise": {"run_sigma": cfg.noise_run_sigma, "step_sigma": cfg.noise_step_sigma,
                          "seed": cfg.noise_seed, "tau_s": cfg.noise_tau_s}} if cfg.noise is not None else {}),
            **({"ignored_recipe_flags": list(cfg.ignored_recipe_flags)} if cfg.flavor != "vllm" else {}),
            **({"role": cfg.role} if cfg.role != "aggregated" else {}),
            **({"kv_transfer": {"engine": self.kv_link.model.engine, "link": self.kv_link.model.link,
                                "link_gb_s": self.kv_link.model.link_gb_s,
                                "kv_bytes_per_token_rank": self.kv_link.model.kv_bytes_per_token_rank}}
               if self.kv_link is not None else {}),
        }
