"""The simulated engine: an OpenAI-compatible server whose timing comes from a roofline model.

Modules: `profiles` (model/GPU facts), `roofline` (step time), `scheduler` (continuous batching),
`tokenizer`, `answers` (GSM8K answer key), `config` (flags, recipe mapping), `metrics`, `server` (HTTP).
"""

#: Bumped when the simulator's behaviour or model changes, so results can be told apart.
SIM_VERSION = "1"
