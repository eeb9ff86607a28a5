"""Dataset loading: local jsonl, the hub snapshot path (parquet), and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from infersweep.evals import data as data_mod
from infersweep.evals.data import Gsm8kData, Gsm8kDataError, load_gsm8k


def test_shared_data_has_the_expected_splits(gsm8k_data: Gsm8kData) -> None:
    assert len(gsm8k_data.test) == 1319
    assert len(gsm8k_data.train) == 7473
    assert gsm8k_data.test[0].question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert gsm8k_data.test[0].answer.endswith("#### 18")


def test_hub_path_reads_parquet_shards_in_order(
    tmp_path: Path, gsm8k_dir: Path, gsm8k_data: Gsm8kData, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.json as pa_json  # builds tables without pyarrow's (slow) pandas probe
    import pyarrow.parquet as pq

    snapshot = tmp_path / "snapshots" / "abc123"
    (snapshot / "main").mkdir(parents=True)
    for split, rows in (("train", 30), ("test", 20)):
        table = pa_json.read_json(gsm8k_dir / f"{split}.jsonl").slice(0, rows)
        pq.write_table(table.slice(0, 10), snapshot / "main" / f"{split}-00000-of-00002.parquet")
        pq.write_table(table.slice(10), snapshot / "main" / f"{split}-00001-of-00002.parquet")
    calls = []

    def fake_snapshot_download(**kwargs: object) -> str:
        calls.append(kwargs)
        return str(snapshot)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    loaded = load_gsm8k()
    assert loaded.train == gsm8k_data.train[:30]
    assert loaded.test == gsm8k_data.test[:20]
    assert loaded.source.endswith("@abc123")
    assert calls[0]["repo_id"] == "openai/gsm8k" and calls[0]["repo_type"] == "dataset"
    assert calls[0]["allow_patterns"] == ["main/*.parquet"]


def test_hub_unreachable_gives_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(**kwargs: object) -> str:
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr("huggingface_hub.snapshot_download", offline)
    with pytest.raises(Gsm8kDataError, match="--data-dir"):
        load_gsm8k()


def test_local_dir_errors_name_file_line_and_key(tmp_path: Path) -> None:
    with pytest.raises(Gsm8kDataError, match=r"train\.jsonl: file not found"):
        load_gsm8k(tmp_path)
    (tmp_path / "train.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n')
    (tmp_path / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q2"}\n')
    with pytest.raises(Gsm8kDataError, match=r"test\.jsonl:2: key 'answer' must be a string"):
        load_gsm8k(tmp_path)
    (tmp_path / "test.jsonl").write_text("[1]\n")
    with pytest.raises(Gsm8kDataError, match="expected a JSON object"):
        load_gsm8k(tmp_path)
    (tmp_path / "test.jsonl").write_text("\n")
    with pytest.raises(Gsm8kDataError, match="no rows"):
        data_mod.read_jsonl_split(tmp_path / "test.jsonl")
