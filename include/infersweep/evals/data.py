"""The GSM8K dataset (`openai/gsm8k`, config `main`): from the Hugging Face cache or a local folder.

Production downloads the config's parquet shards once with huggingface_hub (cached, reused, and
usable with `HF_HUB_OFFLINE=1` afterwards). `--data-dir` reads `train.jsonl` / `test.jsonl` with
the same schema (`{"question": str, "answer": str}` per line) instead. Row order is the split
order lm-eval iterates, which matters: doc ids and few-shot draws depend on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from infersweep.faults.errors import InfersweepError

DATASET_REPO = "openai/gsm8k"
DATASET_CONFIG = "main"
SPLITS = ("train", "test")
TEST_SIZE = 1319
HUB_ETAG_TIMEOUT_S = 30.0


class Gsm8kDataError(InfersweepError, ValueError):
    """The dataset could not be found or does not have the expected schema."""


@dataclass(frozen=True, slots=True)
class Gsm8kDoc:
    """One GSM8K row. `answer` holds the worked solution ending in `#### <number>`."""

    question: str
    answer: str

    def as_dict(self) -> dict[str, str]:
        """The row as lm-eval sees it (used for doc equality and logging)."""
        return {"question": self.question, "answer": self.answer}


@dataclass(frozen=True)
class Gsm8kData:
    """Both splits plus where they came from (a folder or the hub cache snapshot)."""

    train: tuple[Gsm8kDoc, ...]
    test: tuple[Gsm8kDoc, ...]
    source: str


def load_gsm8k(data_dir: str | Path | None = None, *, revision: str | None = None) -> Gsm8kData:
    """Load train and test splits from `data_dir` (jsonl) or the Hugging Face hub cache (parquet)."""
    if data_dir is not None:
        root = Path(data_dir)
        train = read_jsonl_split(root / "train.jsonl")
        test = read_jsonl_split(root / "test.jsonl")
        return Gsm8kData(train=train, test=test, source=str(root.resolve()))
    snapshot = _hub_snapshot(revision)
    return Gsm8kData(
        train=read_parquet_split(snapshot, "train"),
        test=read_parquet_split(snapshot, "test"),
        source=f"hf://datasets/{DATASET_REPO}/{DATASET_CONFIG}@{snapshot.name}",
    )


def read_jsonl_split(path: Path) -> tuple[Gsm8kDoc, ...]:
    """Read one split file; every line must be an object with string `question` and `answer`."""
    if not path.is_file():
        raise Gsm8kDataError(
            f"{path}: file not found; --data-dir must hold train.jsonl and test.jsonl "
            f'(one {{"question": str, "answer": str}} object per line)'
        )
    return tuple(_doc_from_row(row, f"{path}:{line_no}") for line_no, row in read_jsonl_objects(path, Gsm8kDataError))


def read_jsonl_objects(path: Path, error: type[ValueError]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; raises `error` naming the file and line."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror})") from exc
    rows: list[tuple[int, dict[str, Any]]] = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise error(f"{path}:{line_no}: not valid JSON ({exc})") from exc
        if not isinstance(row, dict):
            raise error(f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}")
        rows.append((line_no, row))
    if not rows:
        raise error(f"{path}: no rows")
    return rows


def read_parquet_split(snapshot: Path, split: str) -> tuple[Gsm8kDoc, ...]:
    """Read the parquet shards of one split of the `main` config from a hub snapshot, in shard order."""
    import pyarrow.parquet as pq  # heavy; only needed on the hub path

    shards = sorted((snapshot / DATASET_CONFIG).glob(f"{split}-*.parquet"))
    if not shards:
        raise Gsm8kDataError(f"{snapshot / DATASET_CONFIG}: no {split}-*.parquet shards in the hub snapshot")
    docs: list[Gsm8kDoc] = []
    for shard in shards:
        # ParquetFile.read, not read_table: the latter imports pyarrow.dataset (seconds) for one file.
        table = pq.ParquetFile(shard).read(columns=["question", "answer"])
        for offset, row in enumerate(table.to_pylist()):
            docs.append(_doc_from_row(row, f"{shard}#row{offset}"))
    return tuple(docs)


def _doc_from_row(row: object, where: str) -> Gsm8kDoc:
    if not isinstance(row, dict):
        raise Gsm8kDataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("question", "answer"):
        if not isinstance(row.get(key), str):
            raise Gsm8kDataError(f"{where}: key '{key}' must be a string (GSM8K schema: question, answer)")
    return Gsm8kDoc(question=row["question"], answer=row["answer"])


def _hub_snapshot(revision: str | None) -> Path:
    """Download (or reuse from the cache) the `main/*.parquet` files of openai/gsm8k."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    try:
        path = snapshot_download(
            repo_id=DATASET_REPO,
            repo_type="dataset",
            revision=revision,
            allow_patterns=[f"{DATASET_CONFIG}/*.parquet"],
            etag_timeout=HUB_ETAG_TIMEOUT_S,
        )
    except LocalEntryNotFoundError as exc:
        hint = "HF_HUB_OFFLINE is set and the dataset is not cached" if offline else "the hub is unreachable"
        raise Gsm8kDataError(
            f"{DATASET_REPO} ({DATASET_CONFIG}) could not be loaded: {hint}. "
            "Pre-download it into the HF cache or pass --data-dir with train.jsonl/test.jsonl."
        ) from exc
    return Path(path)
