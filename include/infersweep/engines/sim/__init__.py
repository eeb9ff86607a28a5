"""The simulated engine: an OpenAI-compatible server whose timing comes from a roofline model.

Modules: `profiles` (model/GPU facts, YAML in `profile_data/`), `roofline` (step time), `scheduler`
(continuous batching), `offline` (closed-loop runs without HTTP), `tokenizer`, `answers` (GSM8K answer
key), `config` (flags, recipe mapping), `core` (requests and SSE encoding), `metrics`, `server` (HTTP).
"""

#: Bumped when the simulator's behaviour or model changes, so results can be told apart.
SIM_VERSION = "1"
