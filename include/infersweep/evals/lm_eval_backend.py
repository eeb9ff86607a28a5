"""`--backend lm-eval`: run the reference tool itself and parse its output into an `EvalResult`.

The command is InferenceX's `run_lm_eval`: `lm_eval --model local-chat-completions
--apply_chat_template --tasks <gsm8k.yaml> --log_samples` with the same model_args and gen_kwargs.
The task YAML is generated from the constants the native backend uses (prompt, filters, metric),
so both backends run the same protocol; with `data_dir` it reads the local jsonl files through the
`json` dataset builder instead of the hub. InferenceX's `reasoning_content` patch is loaded via
`sitecustomize` (see `lm_eval_sitecustomize.py`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from infersweep.evals import prompt as P
from infersweep.evals.client import MAX_RETRIES, REQUEST_TIMEOUT_S, chat_completions_url
from infersweep.evals.data import DATASET_CONFIG, DATASET_REPO
from infersweep.evals.filters import FALLBACK, FLEXIBLE_EXTRACT, STRICT_MATCH
from infersweep.evals.models import TASK_GSM8K, EvalResult, EvalSample
from infersweep.evals.results import finish
from infersweep.evals.scoring import IGNORE_CASE, REGEXES_TO_IGNORE, normalize
from infersweep.evals.thresholds import Thresholds, load_thresholds
from infersweep.faults.errors import InfersweepError

DEFAULT_TIMEOUT_S = 6 * 3600.0


class LmEvalError(InfersweepError, RuntimeError):
    """lm_eval is missing, failed, or left no usable output."""


def task_config(data_dir: str | Path | None = None, *, stop: Sequence[str] = P.STOP) -> dict[str, Any]:
    """The lm-eval task config of InferenceX's gsm8k task, built from this package's constants."""
    if data_dir is None:
        source: dict[str, Any] = {"dataset_path": DATASET_REPO, "dataset_name": DATASET_CONFIG}
    else:
        root = Path(data_dir).resolve()
        source = {
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {s: str(root / f"{s}.jsonl") for s in ("train", "test")}},
        }
    return {
        "task": TASK_GSM8K,
        **source,
        "output_type": "generate_until",
        "training_split": "train",
        "fewshot_split": "train",
        "test_split": "test",
        "doc_to_text": P.DOC_TO_TEXT_TEMPLATE.replace("{question}", "{{question}}"),
        "doc_to_target": "{{answer}}",
        "metric_list": [
            {
                "metric": "exact_match",
                "aggregation": "mean",
                "higher_is_better": True,
                "ignore_case": IGNORE_CASE,
                "ignore_punctuation": False,
                "regexes_to_ignore": list(REGEXES_TO_IGNORE),
            }
        ],
        "generation_kwargs": {"until": list(stop), "do_sample": False, "temperature": 0.0},
        "repeats": 1,
        "num_fewshot": P.NUM_FEWSHOT,
        "filter_list": [
            {
                "name": f.name,
                "filter": [
                    {"function": "regex", "group_select": f.group_select, "regex_pattern": f.pattern},
                    {"function": "take_first"},
                ],
            }
            for f in (STRICT_MATCH, FLEXIBLE_EXTRACT)
        ],
        "metadata": {"version": 3.0},
    }


def lm_eval_command(python: str | None = None) -> list[str]:
    """How to start lm_eval: this interpreter's module when importable, else `lm_eval` on PATH."""
    if python:
        return [python, "-m", "lm_eval"]
    if importlib.util.find_spec("lm_eval") is not None:
        return [sys.executable, "-m", "lm_eval"]
    found = shutil.which("lm_eval")
    if found:
        return [found]
    raise LmEvalError(
        "lm-eval is not installed: `pip install 'infersweep[lm-eval]'` (or `make test-eval-parity` builds "
        ".venv-lmeval; pass --lm-eval-python .venv-lmeval/bin/python)"
    )


def build_argv(
    *,
    task_yaml: Path,
    output_path: Path,
    base_url: str,
    model: str,
    concurrency: int,
    context_len: int,
    max_tokens: int,
    limit: int | None,
    timeout_s: float = REQUEST_TIMEOUT_S,
    max_retries: int = MAX_RETRIES,
    api_key: str = "EMPTY",
) -> list[str]:
    """lm_eval arguments, flag for flag InferenceX's `run_lm_eval`."""
    model_args = ",".join(
        [
            f"model={model}",
            f"base_url={chat_completions_url(base_url)}",
            f"api_key={api_key}",
            f"eos_string={P.EOS_STRING}",
            f"max_retries={max_retries}",
            f"num_concurrent={concurrency}",
            f"timeout={int(timeout_s)}",
            "tokenized_requests=False",
            f"max_length={context_len}",
        ]
    )
    argv = [
        "--model", "local-chat-completions", "--apply_chat_template",
        "--tasks", str(task_yaml),
        "--output_path", str(output_path),
        "--log_samples",
        "--model_args", model_args,
        "--gen_kwargs", f"max_tokens={max_tokens},temperature={P.TEMPERATURE},top_p={P.TOP_P}",
    ]  # fmt: skip
    if limit is not None:
        argv += ["--limit", str(limit)]
    return argv


def run_lm_eval(
    base_url: str,
    model: str,
    *,
    limit: int | None = None,
    concurrency: int = 64,
    data_dir: str | Path | None = None,
    context_len: int = 16384,
    max_tokens: int | None = None,
    out: str | Path | None = None,
    model_prefix: str | None = None,
    thresholds: Thresholds | str | Path | None = None,
    lm_eval_python: str | None = None,
    work_dir: str | Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> EvalResult:
    """Run lm_eval against `base_url` and return its scores and samples as an `EvalResult`.

    `work_dir` keeps lm-eval's own files (task YAML, results and samples JSON); a temporary
    directory is used and removed otherwise.
    """
    budget = max_tokens if max_tokens is not None else P.max_tokens_for_context(context_len)
    floors = thresholds if isinstance(thresholds, Thresholds) else load_thresholds(thresholds)
    command = lm_eval_command(lm_eval_python)
    with tempfile.TemporaryDirectory(prefix="infersweep-lmeval-") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        task_yaml = root / "gsm8k.yaml"
        task_yaml.write_text(yaml.safe_dump(task_config(data_dir), sort_keys=False, allow_unicode=True), encoding="utf-8")
        patch_dir = root / "patch"
        patch_dir.mkdir(exist_ok=True)
        shutil.copyfile(Path(__file__).with_name("lm_eval_sitecustomize.py"), patch_dir / "sitecustomize.py")
        output_path = root / "output"
        argv = command + build_argv(
            task_yaml=task_yaml,
            output_path=output_path,
            base_url=base_url,
            model=model,
            concurrency=concurrency,
            context_len=context_len,
            max_tokens=budget,
            limit=limit,
        )
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(patch_dir), env.get("PYTHONPATH")]))
        env.setdefault("OPENAI_API_KEY", "EMPTY")
        if data_dir is not None:
            env["HF_DATASETS_OFFLINE"] = "1"  # the json builder is local; never reach for the hub
        started = time.perf_counter()
        log_path = root / "lm_eval.log"
        with log_path.open("wb") as log_file:
            try:
                proc = subprocess.run(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
            except subprocess.TimeoutExpired as exc:
                raise LmEvalError(f"lm_eval did not finish within {timeout_s:.0f} s") from exc
        duration = time.perf_counter() - started
        log_text = log_path.read_text(encoding="utf-8", errors="replace")
        if proc.returncode != 0:
            tail = "\n".join(log_text.splitlines()[-30:])
            raise LmEvalError(f"lm_eval exited with {proc.returncode}:\n{tail}")
        result = parse_lm_eval_output(output_path, data_dir=data_dir)
    return finish(
        result, floors=floors, model_prefix=model_prefix, out=out, backend="lm-eval", model=model,
        base_url=base_url, concurrency=concurrency, max_tokens=budget, context_len=context_len,
        data_source=str(Path(data_dir).resolve()) if data_dir else f"hf://datasets/{DATASET_REPO}/{DATASET_CONFIG}",
        retries=None, duration_s=duration,
    )  # fmt: skip


def parse_lm_eval_output(output_path: str | Path, *, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Read lm-eval's `results_*.json` and `samples_gsm8k_*.jsonl` into EvalResult fields."""
    root = Path(output_path)
    results_files = sorted(root.rglob("results_*.json"))
    samples_files = sorted(root.rglob(f"samples_{TASK_GSM8K}_*.jsonl"))
    if not results_files or not samples_files:
        raise LmEvalError(f"{root}: lm_eval left no results_*.json / samples_{TASK_GSM8K}_*.jsonl")
    results = json.loads(results_files[-1].read_text(encoding="utf-8"))
    metrics = results["results"][TASK_GSM8K]
    per_doc: dict[int, dict[str, Any]] = {}
    for line in samples_files[-1].read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        entry = per_doc.setdefault(int(row["doc_id"]), {"response": _first_response(row), "target": row["target"]})
        entry["prompt_hash"] = row.get("prompt_hash")
        filtered = row["filtered_resps"][0] if row.get("filtered_resps") else FALLBACK
        entry[row["filter"]] = (filtered, float(row["exact_match"]) == 1.0)
    samples = [
        EvalSample(
            doc_id=doc_id,
            prompt_hash=entry.get("prompt_hash"),
            response=entry["response"],
            strict_match_answer=entry[STRICT_MATCH.name][0],
            strict_match_correct=entry[STRICT_MATCH.name][1],
            flexible_extract_answer=entry[FLEXIBLE_EXTRACT.name][0],
            flexible_extract_correct=entry[FLEXIBLE_EXTRACT.name][1],
            target=normalize(entry["target"]),
        )
        for doc_id, entry in sorted(per_doc.items())
    ]
    return {
        "task": TASK_GSM8K,
        "n": len(samples),
        "strict_match": float(metrics[f"exact_match,{STRICT_MATCH.name}"]),
        "flexible_extract": float(metrics[f"exact_match,{FLEXIBLE_EXTRACT.name}"]),
        "stderr_strict_match": _stderr(metrics.get(f"exact_match_stderr,{STRICT_MATCH.name}")),
        "stderr_flexible_extract": _stderr(metrics.get(f"exact_match_stderr,{FLEXIBLE_EXTRACT.name}")),
        "samples": samples,
    }


def logged_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The chat messages of one `--log_samples` row (`arguments.gen_args_0.arg_0`, a JSON chat string)."""
    arg = row["arguments"]["gen_args_0"]["arg_0"]
    if isinstance(arg, list):  # JsonChatStr is a NamedTuple, serialised as a one-element list
        arg = arg[0]
    if isinstance(arg, dict):
        arg = arg["prompt"]
    messages: list[dict[str, str]] = json.loads(arg)
    return messages


def _first_response(row: dict[str, Any]) -> str:
    resps = row.get("resps") or [[""]]
    first = resps[0][0] if isinstance(resps[0], list) else resps[0]
    return first if isinstance(first, str) else ""


def _stderr(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None
