"""The simulator's gsm8k answer key: question → final answer, built from the GSM8K test split.

The simulated engine answers a gsm8k question right with probability `accuracy` when it knows the
answer, so the eval path (prompts, extraction, scoring, thresholds) runs for real without a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from infersweep.evals.data import load_gsm8k

#: A local GSM8K copy (train.jsonl / test.jsonl) for machines without the hub; else the hub's openai/gsm8k.
GSM8K_DIR_ENV = "INFERSWEEP_GSM8K_DIR"


def gsm8k_data_dir(configured: str | None = None) -> str | None:
    """The sweep's `eval.data-dir`, else `$INFERSWEEP_GSM8K_DIR`, else None (the hub)."""
    return configured or os.environ.get(GSM8K_DIR_ENV) or None


def sim_answer_key(work_dir: Path, data_dir: str | None) -> Path:
    """The answer key file under `work_dir`, written once (atomically) from the GSM8K test split."""
    path = work_dir / "sim-answer-key.jsonl"
    if path.exists():
        return path
    data = load_gsm8k(gsm8k_data_dir(data_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        for doc in data.test:
            fh.write(json.dumps({"question": doc.question, "answer": doc.answer.split("####")[-1].strip()}) + "\n")
    tmp.replace(path)
    return path
