"""GSM8K accuracy gate, run on the server the sweep already holds and scored exactly like lm-eval.

Modules: `data` (hub/local dataset), `prompt` (lm-eval's chat messages and few-shot sampling),
`filters` and `scoring` (strict-match / flexible-extract, exact_match, stderr), `client` (async
OpenAI-compatible chat client with counted retries), `thresholds` (per-model-prefix floors),
`models` and `results` (the `EvalResult` schema, verdict and files), `gsm8k` (the public
`run_gsm8k` / `score_responses` API), `lm_eval_backend` (the reference tool itself) and `cli`.
"""
