"""The lm-eval backend without lm-eval: task config, command line, output parsing, the patch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from infersweep.evals import lm_eval_sitecustomize as patch
from infersweep.evals.lm_eval_backend import (
    LmEvalError,
    build_argv,
    logged_messages,
    parse_lm_eval_output,
    run_lm_eval,
    task_config,
)


def test_task_config_is_inferencex_gsm8k(tmp_path: Path) -> None:
    config = yaml.safe_load(yaml.safe_dump(task_config()))
    assert (config["dataset_path"], config["dataset_name"]) == ("openai/gsm8k", "main")
    assert config["doc_to_text"] == (
        "Question: {{question}}\nEnd your response with the answer on the last line, formatted as: #### [number]\nAnswer:"
    )
    assert config["doc_to_target"] == "{{answer}}" and config["num_fewshot"] == 5
    assert (config["fewshot_split"], config["test_split"]) == ("train", "test")
    assert config["generation_kwargs"] == {"until": ["</s>", "<|im_end|>"], "do_sample": False, "temperature": 0.0}
    metric = config["metric_list"][0]
    assert metric["regexes_to_ignore"] == [",", "\\$", "(?s).*#### ", "\\.$"] and metric["ignore_case"] is True
    filters = {f["name"]: f["filter"] for f in config["filter_list"]}
    assert filters["strict-match"][0] == {"function": "regex", "group_select": -1, "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"}
    assert filters["flexible-extract"][0]["regex_pattern"] == "(-?[$0-9.,]{2,})|(-?[0-9]+)"
    assert all(f[1] == {"function": "take_first"} for f in filters.values())
    local = task_config(tmp_path)
    assert local["dataset_path"] == "json"
    assert local["dataset_kwargs"]["data_files"]["test"] == str(tmp_path.resolve() / "test.jsonl")


def test_argv_matches_inferencex_run_lm_eval(tmp_path: Path) -> None:
    argv = build_argv(task_yaml=tmp_path / "t.yaml", output_path=tmp_path / "o", base_url="http://h:8", model="m",
                      concurrency=32, context_len=16384, max_tokens=12288, limit=None)  # fmt: skip
    assert argv[:3] == ["--model", "local-chat-completions", "--apply_chat_template"]
    assert "--log_samples" in argv and "--limit" not in argv
    model_args = argv[argv.index("--model_args") + 1]
    assert model_args == (
        "model=m,base_url=http://h:8/v1/chat/completions,api_key=EMPTY,eos_string=</s>,max_retries=5,"
        "num_concurrent=32,timeout=1800,tokenized_requests=False,max_length=16384"
    )
    assert argv[argv.index("--gen_kwargs") + 1] == "max_tokens=12288,temperature=0,top_p=1"
    limited = build_argv(task_yaml=tmp_path, output_path=tmp_path, base_url="u", model="m", concurrency=1,
                         context_len=4096, max_tokens=2048, limit=7)  # fmt: skip
    assert limited[-2:] == ["--limit", "7"]


def _write_lm_eval_output(root: Path) -> None:
    out = root / "served__model"
    out.mkdir(parents=True)
    (out / "results_2026-01-01T00-00-00.json").write_text(json.dumps({"results": {"gsm8k": {
        "exact_match,strict-match": 0.5, "exact_match_stderr,strict-match": 0.5,
        "exact_match,flexible-extract": 1.0, "exact_match_stderr,flexible-extract": 0.0}}}))  # fmt: skip
    rows = []
    for doc_id, response, strict, flexible in ((0, "#### 18", "18", "18"), (1, "so 3", "[invalid]", "3")):
        chat = json.dumps([{"role": "user", "content": f"Question: q{doc_id}"}])
        for name, value, ok in (("strict-match", strict, doc_id == 0), ("flexible-extract", flexible, True)):
            rows.append({"doc_id": doc_id, "target": f"x\n#### {18 if doc_id == 0 else 3}",
                         "arguments": {"gen_args_0": {"arg_0": [chat], "arg_1": {}}}, "resps": [[response]],
                         "filtered_resps": [value], "filter": name, "exact_match": 1.0 if ok else 0.0,
                         "prompt_hash": f"h{doc_id}"})  # fmt: skip
    (out / "samples_gsm8k_2026-01-01T00-00-00.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_parse_output_into_the_same_schema(tmp_path: Path) -> None:
    _write_lm_eval_output(tmp_path)
    parsed = parse_lm_eval_output(tmp_path)
    assert (parsed["n"], parsed["strict_match"], parsed["flexible_extract"]) == (2, 0.5, 1.0)
    assert (parsed["stderr_strict_match"], parsed["stderr_flexible_extract"]) == (0.5, 0.0)
    first, second = parsed["samples"]
    assert (first.response, first.strict_match_correct, first.prompt_hash, first.target) == ("#### 18", True, "h0", "18")
    assert (second.strict_match_answer, second.flexible_extract_answer, second.flexible_extract_correct) == ("[invalid]", "3", True)


def test_logged_messages_accepts_each_serialisation() -> None:
    chat = json.dumps([{"role": "user", "content": "hi"}])
    for arg in (chat, [chat], {"prompt": chat}):
        assert logged_messages({"arguments": {"gen_args_0": {"arg_0": arg}}}) == [{"role": "user", "content": "hi"}]


def test_missing_output_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LmEvalError, match="left no results"):
        parse_lm_eval_output(tmp_path)


def test_a_failing_lm_eval_is_reported_with_its_log(tmp_path: Path) -> None:
    # This interpreter has no lm_eval module: `python -m lm_eval` exits 1 with "No module named".
    if __import__("importlib").util.find_spec("lm_eval") is not None:
        pytest.skip("lm_eval is installed here; the parity lane covers the real run")
    with pytest.raises(LmEvalError, match="No module named lm_eval"):
        run_lm_eval("http://127.0.0.1:9", "m", limit=1, lm_eval_python=sys.executable, work_dir=tmp_path, timeout_s=60)


def test_reasoning_content_patch_logic() -> None:
    outputs = [
        {"choices": [{"index": 0, "message": {"content": "a"}}]},
        {"choices": [{"index": 0, "message": {"content": None, "reasoning_content": "r"}}]},
        {"choices": [{"index": 0, "message": {"content": ""}}]},
        {"nothing": True},
        "garbage",
    ]
    assert patch._parse_generations(outputs) == ["a", "r", "", ""]
    assert patch._parse_generations(outputs[0]) == ["a"]
