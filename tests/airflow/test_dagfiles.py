"""Generated DAG files: one source per file, so a broken sweep file costs only its own DAGs.

These tests parse a private dags folder with Airflow's DagBag (tests/integration/test_blast_radius.py does
the same under the real dag-processor)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from infersweep.airflow.dagfiles import MARKER, SUBDIR, DagFile, load_dagbag, shard_of, sync_dag_files
from infersweep.airflow.report_dag import REPORT_DAG_ID
from infersweep.airflow.settings import AirflowSettings

ROOT = Path(__file__).resolve().parents[2]


def sweep_text(keys: list[str], *, isl: int = 1024, node: str = "n0") -> str:
    entries = "".join(f"""
  {key}:
    image: vllm/vllm-openai:v0.11.0
    model: meta-llama/Llama-3.1-8B-Instruct
    model-prefix: llama3.1-8b
    runner: sim-h100
    precision: bf16
    framework: vllm
    multinode: false
    scenarios:
      fixed-seq-len:
      - isl: {isl}
        osl: 32
        search-space:
        - {{ tp: 1, conc-list: [1] }}""" for key in keys)
    return (f"sweep: t\nengine: sim\nschedule: null\nentries:{entries}\n"
            f"inventory:\n  sim-h100:\n  - {{ name: {node}, gpus: 8, gpu-memory-gb: 80, gpu-profile: h100 }}\n")


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy2(ROOT / "dags" / "infersweep_dags.py", dags / "infersweep_dags.py")
    configs = tmp_path / "configs"
    configs.mkdir()
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    monkeypatch.setenv("INFERSWEEP_CONFIGS", str(configs))
    monkeypatch.setenv("INFERSWEEP_WORK_DIR", str(tmp_path / "work"))
    return {"dags": dags, "configs": configs}


def _files(env: dict[str, Path]) -> list[str]:
    return sorted(p.name for p in (env["dags"] / SUBDIR).glob("*.py"))


def test_a_bad_file_costs_only_its_own_dags(env: dict[str, Path]) -> None:
    (env["configs"] / "good.yaml").write_text(sweep_text(["good-a", "good-b"]))
    bad = env["configs"] / "bad.yaml"
    bad.write_text(sweep_text(["bad-a"], isl=0))
    bag = load_dagbag(env["dags"])
    assert set(bag.dags) == {"good-a", "good-b", REPORT_DAG_ID}
    ((path, error),) = bag.import_errors.items()
    assert Path(path).parent.name == SUBDIR and Path(path).name.startswith("bad_")
    assert f"{bad}:15: bad-a: scenarios.fixed-seq-len[0].isl: must be greater than 0, got 0" in error
    # The good DAG's run plans from its own file only: the broken sibling cannot fail it.
    assert list(bag.dags["good-a"].task_dict["plan"].op_args) == ["good-a", str((env["configs"] / "good.yaml").resolve())]


def test_a_missing_path_and_an_empty_folder_get_their_own_error(env: dict[str, Path], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (env["configs"] / "good.yaml").write_text(sweep_text(["good-a"]))
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("INFERSWEEP_CONFIGS", f"{env['configs']}:{tmp_path / 'missing.yaml'}:{tmp_path / 'empty'}")
    bag = load_dagbag(env["dags"])
    assert set(bag.dags) == {"good-a", REPORT_DAG_ID}
    errors = sorted(bag.import_errors.values())
    assert len(errors) == 2
    assert any("missing.yaml: file not found" in e for e in errors), errors
    assert any("folder has no sweep files" in e for e in errors), errors


def test_a_key_defined_twice_fails_the_later_file_only(env: dict[str, Path]) -> None:
    (env["configs"] / "a.yaml").write_text(sweep_text(["same", "only-a"]))
    (env["configs"] / "b.yaml").write_text(sweep_text(["same", "only-b"]))
    bag = load_dagbag(env["dags"])
    assert set(bag.dags) == {"same", "only-a", REPORT_DAG_ID}
    ((path, error),) = bag.import_errors.items()
    assert Path(path).name.startswith("b_")
    assert f"same: config key already defined at {env['configs'] / 'a.yaml'}:" in error, error


def test_a_large_source_is_split_and_every_dag_is_in_exactly_one_file(env: dict[str, Path],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERSWEEP_DAGS_PER_FILE", "2")
    keys = [f"k{i}" for i in range(7)]
    (env["configs"] / "big.yaml").write_text(sweep_text(keys))
    sync_dag_files(env["dags"])
    files = _files(env)
    assert len(files) == 4 and all(f.endswith("of4.py") for f in files)
    from airflow.dag_processing.dagbag import DagBag

    seen: list[str] = []
    for name in files:
        bag = DagBag(dag_folder=str(env["dags"] / SUBDIR / name))
        assert not bag.import_errors
        seen.extend(bag.dags)
    assert sorted(seen) == keys
    assert sorted(shard_of(k, 4) for k in keys) == sorted(shard_of(k, 4) for k in seen)


def test_sync_keeps_unchanged_files_and_removes_only_its_own_stale_ones(env: dict[str, Path],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (env["configs"] / "a.yaml").write_text(sweep_text(["a1"]))
    (env["configs"] / "b.yaml").write_text(sweep_text(["b1"]))
    first = sync_dag_files(env["dags"])
    assert len(first.written) == 2
    mine = env["dags"] / SUBDIR / "user_dag.py"  # not ours: never deleted
    mine.write_text("# a user's own DAG file\n")
    stamp = {p.name: p.stat().st_mtime_ns for p in (env["dags"] / SUBDIR).glob("*.py")}
    again = sync_dag_files(env["dags"])
    assert again.written == [] and sorted(again.unchanged) == sorted(first.written)
    assert stamp == {p.name: p.stat().st_mtime_ns for p in (env["dags"] / SUBDIR).glob("*.py")}
    (env["configs"] / "b.yaml").unlink()
    gone = sync_dag_files(env["dags"])
    assert len(gone.removed) == 1 and gone.removed[0].startswith("b_")
    assert mine.exists() and sorted(_files(env)) == sorted([*gone.unchanged, "user_dag.py"])


def test_a_file_whose_source_left_the_config_defines_nothing(env: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(sweep_text(["elsewhere"]))
    stray = DagFile(str(other), 0, 1)
    (env["dags"] / SUBDIR).mkdir()
    (env["dags"] / SUBDIR / stray.name).write_text(stray.text())
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(env["dags"] / SUBDIR / stray.name))
    assert bag.dags == {} and bag.import_errors == {}
    assert stray.text().startswith(MARKER + "\n")


def test_the_report_dag_survives_a_sync_that_cannot_write(env: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                          caplog: Any) -> None:
    (env["configs"] / "good.yaml").write_text(sweep_text(["good-a"]))
    (env["dags"] / SUBDIR).write_text("a file where the folder should be\n")  # mkdir fails
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(env["dags"] / "infersweep_dags.py"))
    assert set(bag.dags) == {REPORT_DAG_ID} and bag.import_errors == {}


def test_settings_bound_the_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERSWEEP_DAGS_PER_FILE", "0")
    monkeypatch.setenv("INFERSWEEP_SYNC_DAG_FILES", "0")
    settings = AirflowSettings.from_env()
    assert settings.dags_per_file == 1 and settings.sync_dag_files is False
