"""The parse-time DAG-spec cache: reused while no input file changed, rebuilt as soon as one did."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import infersweep.airflow.parse_cache as pc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    d = tmp_path / "configs"
    d.mkdir()
    for name in ("demo.yaml", "quirks.yaml"):
        shutil.copy(ROOT / "configs" / name, d / name)
    assert "quirks-files" in (d / "demo.yaml").read_text()
    return d


def test_cache_hit_then_invalidated_by_any_input_file(configs: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = pc.load_sweep
    monkeypatch.setattr(pc, "load_sweep", lambda paths: calls.append(paths) or real(paths))
    cache = tmp_path / "cache"
    first = pc.load_dag_specs([configs / "demo.yaml"], cache)
    second = pc.load_dag_specs([configs / "demo.yaml"], cache)
    assert len(calls) == 1 and second == first
    assert [s.dag_id for s in first] == ["llama3.1-8b-bf16-sim-h100-vllm"] and first[0].n_points == 12
    # Touching a file the sweep includes (not only the one named) invalidates the cache.
    quirks = configs / "quirks.yaml"
    st = quirks.stat()
    os.utime(quirks, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    pc.load_dag_specs([configs / "demo.yaml"], cache)
    assert len(calls) == 2


def test_corrupt_cache_falls_back_to_a_full_load(configs: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    pc.load_dag_specs([configs / "demo.yaml"], cache)
    for f in cache.iterdir():
        f.write_text("{not json")
    assert pc.load_dag_specs([configs / "demo.yaml"], cache)[0].concs == (1, 2, 4, 8, 16)


def test_disabled_cache_reads_the_files(configs: Path) -> None:
    assert pc.load_dag_specs([configs / "demo.yaml"], None)


def test_a_file_added_to_a_configured_folder_invalidates_the_cache(configs: Path, tmp_path: Path) -> None:
    """A new sweep file in a configured folder was ignored until something else changed (issue 16): the
    key covers the folder's listing, good file or bad."""
    cache = tmp_path / "cache"
    first = pc.load_dag_specs([configs], cache)
    assert [s.dag_id for s in first] == ["llama3.1-8b-bf16-sim-h100-vllm"]
    (configs / "second.yaml").write_text(
        "sweep: second\nengine: sim\nentries:\n  second-key:\n    image: vllm/vllm-openai:v0.11.0\n"
        "    model: meta-llama/Llama-3.1-8B-Instruct\n    model-prefix: llama3.1-8b\n    runner: sim-h100\n"
        "    precision: bf16\n    framework: vllm\n    multinode: false\n    scenarios:\n      fixed-seq-len:\n"
        "      - {isl: 1024, osl: 128, search-space: [{tp: 1, conc-list: [1]}]}\n")
    assert sorted(s.dag_id for s in pc.load_dag_specs([configs], cache)) == [
        "llama3.1-8b-bf16-sim-h100-vllm", "second-key"]
    (configs / "broken.yaml").write_text("sweep: broken\nentries: [\n")
    with pytest.raises(Exception, match=r"broken\.yaml"):
        pc.load_dag_specs([configs], cache)
