"""Our sweep-file format and load_sweep(): references, inventory, quirks, eval, schedule, image pattern."""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest

from infersweep.config.errors import ConfigError
from infersweep.config.runners import RunnerHardware
from infersweep.config.sweep import discover, load_sweep
from infersweep.plan.planner import expand_jobs

ENTRY = """
  {key}:
    image: vllm/vllm-openai:v1
    model: {model}
    model-prefix: {prefix}
    runner: {runner}
    precision: fp8
    framework: vllm
    multinode: false
    scenarios:
      fixed-seq-len:
      - isl: 8192
        osl: 1024
        search-space:
        - {{ tp: 8, conc-start: 16, conc-end: 64 }}
"""


def master(key: str = "m1-fp8-h200-vllm", *, model: str = "org/m1", prefix: str = "m1", runner: str = "h200") -> str:
    return textwrap.dedent(ENTRY.format(key=key, model=model, prefix=prefix, runner=runner)).strip() + "\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_master_file_directly_picks_up_runners_beside_it(tmp_path: Path) -> None:
    """A master file loads as is; runners.yaml next to it validates labels (as warnings, like InferenceX)."""
    write(tmp_path / "runners.yaml", "h200: [h200-cw_00]\n")
    path = write(tmp_path / "master.yaml", master() + master("m2-fp8-b9-vllm", runner="b9"))
    sweep = load_sweep([path])
    assert set(sweep.entries) == {"m1-fp8-h200-vllm", "m2-fp8-b9-vllm"}
    assert sweep.runners is not None and sweep.runners.labels == {"h200": ("h200-cw_00",)}
    assert [w.message for w in sweep.warnings] == ["unknown runner label 'b9'"]
    assert sweep.source_of("m2-fp8-b9-vllm") == (str(path), 15)


def test_nested_runners_layout(tmp_path: Path) -> None:
    """The later runners.yaml layout (labels: + hardware:) reads too."""
    write(tmp_path / "runners.yaml", "labels: {h200: [a_0]}\n"
          "hardware: {h200: {gpus-per-node: 8, available-cpu-dram-mib: 1_998_848}}\n")
    sweep = load_sweep([write(tmp_path / "m.yaml", master())])
    assert sweep.runners is not None
    assert sweep.runners.hardware["h200"] == RunnerHardware(**{"gpus-per-node": 8, "available-cpu-dram-mib": 1998848})


def test_runner_hardware_is_validated(tmp_path: Path) -> None:
    """hardware: facts are typed: a missing or unknown fact names the label and the key."""
    write(tmp_path / "runners.yaml", "labels: {h200: [a_0]}\nhardware: {h200: {gpus-per-node: 8, gpu: h200}}\n")
    with pytest.raises(ConfigError) as info:
        load_sweep([write(tmp_path / "m.yaml", master())])
    text = str(info.value)
    assert "runners.yaml:2: hardware.h200.available-cpu-dram-mib: required key is missing" in text
    assert "hardware.h200.gpu: unknown key 'gpu'" in text


def test_sweep_file_selects_master_keys_by_glob(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`masters:` paths are relative to the sweep file; config-keys globs select entries (a master outside the
    sweep file's folder needs its folder allowed)."""
    monkeypatch.setenv("INFERSWEEP_CONFIG_ROOTS", str(tmp_path / "ix"))
    write(tmp_path / "ix" / "master.yaml", master() + master("m2-fp8-h200-vllm"))
    path = write(tmp_path / "sweeps" / "s.yaml", """
        sweep: s
        masters:
        - {path: ../ix/master.yaml, config-keys: ["m2-*"]}
    """)
    sweep = load_sweep([path])
    assert list(sweep.entries) == ["m2-fp8-h200-vllm"]
    assert sweep.default.name == "s"


def test_inline_entries_inventory_and_settings(tmp_path: Path) -> None:
    """Inline entries, a node inventory, schedule, engine, bench and eval settings."""
    path = write(tmp_path / "s.yaml", "sweep: s\nengine: vllm-process\nschedule: '@daily'\n"
                 "bench: {prompts-per-conc: 5}\neval: {limit: 50, select: max-conc}\n"
                 "inventory:\n  h200:\n  - {name: n0, docker-url: 'ssh://n0', gpu-memory-gb: 141, cache-domain: a}\n"
                 "entries:\n" + textwrap.indent(master(), "  "))
    sweep = load_sweep([path])
    settings = sweep.default
    assert (settings.engine, settings.schedule, settings.bench.prompts_per_conc) == ("vllm-process", "@daily", 5)
    assert settings.bench.random_range_ratio == 0.8 and settings.bench.warmups_per_conc == 2
    assert sweep.settings_for("m1-fp8-h200-vllm") is settings
    node = sweep.nodes_for("h200")[0]
    assert (node.name, node.runner, node.docker_url, node.gpu_memory_gb) == ("n0", "h200", "ssh://n0", 141)
    jobs = expand_jobs(sweep)
    assert [(j.conc, j.run_eval) for j in jobs] == [(16, False), (32, False), (64, True)]


def test_defaults(tmp_path: Path) -> None:
    """Unset settings: nightly schedule, vllm-docker, eval on with threshold 0.90, InferenceX bench defaults."""
    sweep = load_sweep([write(tmp_path / "s.yaml", "sweep: s\n")])
    settings = sweep.default
    assert (settings.schedule, settings.engine) == ("0 2 * * *", "vllm-docker")
    assert settings.eval.enabled and settings.eval.task == "gsm8k"
    assert settings.eval.threshold_for("anything") == 0.90


def test_eval_thresholds_file(tmp_path: Path, inferencex_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """thresholds-file reads InferenceX's eval-thresholds.json: per-model first, then the file default."""
    monkeypatch.setenv("INFERSWEEP_CONFIG_ROOTS", str(inferencex_dir))
    path = write(tmp_path / "s.yaml", f"sweep: s\neval: {{thresholds-file: {inferencex_dir / 'eval-thresholds.json'}}}\n")
    settings = load_sweep([path]).default.eval
    assert settings.threshold_for("glm5") == 0.94
    assert settings.threshold_for("minimaxm3") == 0.90
    assert settings.threshold_for("dsr1", "gpqa_diamond_cot_n_shot") == 0.30


def test_quirks_lookup_and_precedence(tmp_path: Path) -> None:
    """Quirks files load (YAML merges included); inline quirks replace a file's; an HF id beats the prefix."""
    write(tmp_path / "q.yaml", """
        fam: &fam
          stream-interval: 20
          gmu: 0.9
        org/m1-big:
          <<: *fam
          checkpoint-bytes: 1000
    """)
    path = write(tmp_path / "s.yaml", "sweep: s\nquirks-files: [q.yaml]\nquirks:\n  fam: {gmu: 0.8}\n")
    sweep = load_sweep([path])
    exact = sweep.quirks_for("fam", "org/m1-big")
    family = sweep.quirks_for("fam", "org/other")
    assert exact is not None and (exact.checkpoint_bytes, exact.stream_interval) == (1000, 20)
    assert family is not None and family.gmu == 0.8 and family.stream_interval is None
    assert sweep.quirks_for("nope", "org/nope") is None


def test_image_for_backfills(tmp_path: Path) -> None:
    """A recorded image wins for its date; other dates render the pattern."""
    path = write(tmp_path / "s.yaml", """
        sweep: s
        image-tag-pattern: "vllm/vllm-openai:nightly-{{ ds_nodash }}"
        image-history: {2026-06-12: "vllm/vllm-openai:minimax-m3"}
    """)
    sweep = load_sweep([path])
    assert sweep.image_for(date(2026, 6, 12)) == "vllm/vllm-openai:minimax-m3"
    assert sweep.image_for(date(2026, 11, 3)) == "vllm/vllm-openai:nightly-20261103"


def test_folder_loads_sweep_files_only_and_keeps_per_file_settings(tmp_path: Path) -> None:
    """A folder means its sweep files; data files beside them are skipped; each key keeps its file's settings."""
    write(tmp_path / "a.yaml", "sweep: a\nengine: sim\neval: {select: max-conc}\nentries:\n" + textwrap.indent(master(), "  "))
    write(tmp_path / "b.yaml", "sweep: b\nentries:\n" + textwrap.indent(master("m2-fp8-h200-vllm"), "  "))
    write(tmp_path / "quirks.yaml", "m1: {gmu: 0.9}\n")
    assert [p.name for p in discover([tmp_path])] == ["a.yaml", "b.yaml"]
    sweep = load_sweep([tmp_path])
    assert sweep.default.engine == "sim" and sweep.settings_for("m2-fp8-h200-vllm").engine == "vllm-docker"
    evals = {(j.config_key, j.conc) for j in expand_jobs(sweep) if j.run_eval}
    assert evals == {("m1-fp8-h200-vllm", 64), ("m2-fp8-h200-vllm", 32), ("m2-fp8-h200-vllm", 64)}
    assert [load_sweep([p]).default.name for p in discover([tmp_path])] == ["a", "b"]


def test_config_key_defined_twice_across_files(tmp_path: Path) -> None:
    """The same key from two different places is an error naming both."""
    write(tmp_path / "a.yaml", "sweep: a\nentries:\n" + textwrap.indent(master(), "  "))
    write(tmp_path / "b.yaml", "sweep: b\nentries:\n" + textwrap.indent(master(), "  "))
    with pytest.raises(ConfigError, match=r"config key defined twice \(also at .*a.yaml:3\)"):
        load_sweep([tmp_path])


def test_same_master_referenced_twice_is_fine(tmp_path: Path) -> None:
    """Two sweep files selecting from one master file do not conflict."""
    write(tmp_path / "m" / "master.yaml", master())
    for name in ("a", "b"):
        write(tmp_path / f"{name}.yaml", f"sweep: {name}\nmasters: [m/master.yaml]\n")
    assert list(load_sweep([tmp_path]).entries) == ["m1-fp8-h200-vllm"]


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="folder has no sweep files"):
        load_sweep([tmp_path])


def test_shipped_configs_load(repo_root: Path) -> None:
    """configs/ loads: the demo, the MiniMax-M3 Hopper example with its quirks and inventory, the real vLLM
    CPU sweep (SmolLM2-135M) and the disaggregated-serving example (its own four simulated nodes)."""
    sweep = load_sweep([repo_root / "configs"])
    assert {"llama3.1-8b-bf16-sim-h100-vllm", "minimaxm3-fp8-h200-vllm", "minimaxm3-fp8-h100-vllm",
            "minimaxm3-fp8-h200-vllm-mtp", "smollm2-135m-fp32-cpu-vllm", "llama3.1-8b-bf16-sim-h100-vllm-agg",
            "llama3.1-8b-bf16-sim-h100-dynamo-sglang"} == set(sweep.entries)
    assert [n.name for n in sweep.nodes_for("sim-h100")] == ["sim-h100-0", "sim-h100-1"]
    assert len(sweep.nodes_for("sim-h100-disagg")) == 4 and sweep.entries["llama3.1-8b-bf16-sim-h100-dynamo-sglang"].multinode
    assert sweep.settings_for("minimaxm3-fp8-h200-vllm").engine == "vllm-docker"
    quirks = sweep.quirks_for("minimaxm3", "MiniMaxAI/MiniMax-M3-MXFP8")
    assert quirks is not None and quirks.spec_decoding["mtp"].draft_model == "Inferact/MiniMax-M3-EAGLE3"


def test_minimax_example_matches_shared_master(repo_root: Path, inferencex_dir: Path) -> None:
    """The example's H200/H100 entries are the shared nvidia-master.yaml ones, verbatim (same groups, same ids)."""
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import PlanFilters

    keys = ("minimaxm3-fp8-h200-vllm", "minimaxm3-fp8-h100-vllm")
    ours = load_sweep([repo_root / "configs" / "minimaxm3-hopper.yaml"])
    theirs = load_sweep([inferencex_dir / "nvidia-master.yaml"])
    for key in keys:
        assert ours.entries[key] == theirs.entries[key]
    ids = [{g.id for g in group_jobs(expand_jobs(s, PlanFilters(config_keys=keys)))} for s in (ours, theirs)]
    assert ids[0] == ids[1] and len(ids[0]) == 13
    mtp = [j for j in expand_jobs(ours) if j.config_key == "minimaxm3-fp8-h200-vllm-mtp"]
    assert mtp and all(j.spec_decoding == "mtp" for j in mtp)


def test_same_file_twice_loads_once(repo_root: Path) -> None:
    demo = repo_root / "configs" / "demo.yaml"
    sweep = load_sweep([demo, demo, repo_root / "configs"])
    assert len(sweep.nodes_for("sim-h100")) == 2


def test_sweep_runners_key_validates_inline_entries(tmp_path: Path) -> None:
    """`runners:` in a sweep file names the labels; an inline entry on an unknown label is an error there."""
    write(tmp_path / "ix" / "runners.yaml", "h100: [h100-a_0]\n")
    path = write(tmp_path / "s.yaml", "sweep: s\nrunners: ix/runners.yaml\nentries:\n" + textwrap.indent(master(), "  "))
    with pytest.raises(ConfigError) as info:
        load_sweep([path])
    assert [i.message for i in info.value.issues] == ["unknown runner label 'h200'"]
    assert info.value.issues[0].line == 8


def test_shared_inventory_file_and_missing_master(tmp_path: Path) -> None:
    """An inventory file used by two sweep files loads once; a missing master names the referencing line."""
    write(tmp_path / "inv.yaml", "h200: [{name: n0}]\n")
    write(tmp_path / "a.yaml", "sweep: a\ninventory-files: [inv.yaml]\n")
    write(tmp_path / "b.yaml", "sweep: b\ninventory-files: [inv.yaml]\n")
    assert [n.name for n in load_sweep([tmp_path]).nodes_for("h200")] == ["n0"]
    bad = write(tmp_path / "c" / "c.yaml", "sweep: c\nmasters: [nope.yaml]\n")
    with pytest.raises(ConfigError, match=r"c.yaml:2: masters\[0\]: .*nope.yaml: file not found \(allowed: "):
        load_sweep([bad])
