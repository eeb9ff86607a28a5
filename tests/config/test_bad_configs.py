"""The malformed-config corpus: every file in tests/fixtures/bad_configs is pinned to its full message list.

Each message names the file, the line, the config key / key path and the fix (`allowed: ...`); a file with
one defect gets exactly one message. `test_bad_input_starts_nothing.py` proves that none of them starts
anything through Airflow.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infersweep.config.errors import ConfigError
from infersweep.config.sweep import load_sweep

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "bad_configs"
SCOPE = "bad-key: scenarios.fixed-seq-len[0].search-space[0]"
#: Problems with the whole document have no key path to name.
WHOLE_FILE = {"empty_file.yaml", "not_a_config.yaml"}
#: Files with several defects on purpose (every problem in a file is reported in one run).
SEVERAL = {"bad_eval.yaml", "bad_quirks.yaml", "inventory_bad_node.yaml", "many_errors.yaml"}

EXPECTED: dict[str, list[str]] = {
    "bad_engine.yaml": [
        "bad_engine.yaml:2: engine: 'docker' is not allowed (allowed: sim, vllm-docker, vllm-process or slurm)",
    ],
    "bad_eval.yaml": [
        "bad_eval.yaml:3: eval.task: 'mmlu' is not allowed (allowed: gsm8k)",
        "bad_eval.yaml:4: eval.default-threshold: must be at most 1.0, got 1.5 (allowed: a value <= 1.0)",
    ],
    "bad_image_pattern.yaml": [
        "bad_image_pattern.yaml:2: image-tag-pattern: unknown template variable {{ date }} (allowed: ds, ds_nodash, yyyy, mm, dd)",
    ],
    "bad_quirks.yaml": [
        "bad_quirks.yaml:4: minimaxm3: gmu: must be at most 1.0, got 1.5 (allowed: a value <= 1.0)",
        "bad_quirks.yaml:5: minimaxm3: extra-flags: unknown key 'extra-flags' (allowed: did you mean 'extra-serve-flags'? ",
    ],
    "bad_schedule.yaml": [
        "bad_schedule.yaml:2: schedule: 'every night at two' is not a cron schedule (allowed: 5 cron fields like '0 2 * * *', a preset like @daily, or null for manual runs)",
    ],
    "bool_as_string.yaml": [
        f"bool_as_string.yaml:16: {SCOPE}.dp-attn: expected true or false, got 'yes' (allowed: true, false)",
    ],
    "conc_end_missing.yaml": [
        f"conc_end_missing.yaml:16: {SCOPE}: conc-end is missing; conc-start and conc-end go together (allowed: add conc-end, or use conc-list)",
    ],
    "conc_list_scalar.yaml": [
        f"conc_list_scalar.yaml:16: {SCOPE}.conc-list: expected a list, got 8 (allowed: a YAML list, e.g. [a, b] or one '- item' per line)",
    ],
    "conc_list_with_start.yaml": [
        f"conc_list_with_start.yaml:16: {SCOPE}: conc-list cannot be combined with conc-start/conc-end (allowed: either conc-list: [..] or conc-start + conc-end)",
    ],
    "conc_list_zero.yaml": [
        f"conc_list_zero.yaml:16: {SCOPE}.conc-list[1]: must be greater than 0, got 0 (allowed: a value > 0)",
    ],
    "conc_start_gt_end.yaml": [
        f"conc_start_gt_end.yaml:16: {SCOPE}: conc-start (64) is greater than conc-end (4) (allowed: conc-start <= conc-end)",
    ],
    "disagg_without_multinode.yaml": [
        "disagg_without_multinode.yaml:11: bad-key: disagg: true requires multinode: true (disaggregated prefill/decode spans nodes) (allowed: set multinode: true (with prefill/decode blocks), or drop disagg)",
    ],
    "docker_url_no_scheme.yaml": [
        "docker_url_no_scheme.yaml:4: inventory.h100[0].docker-url: docker-url 'h100-0:2376' has no Docker engine scheme (allowed: unix:///var/run/docker.sock, ssh://user@host, or tcp://host:2376 with TLS (DOCKER_TLS_VERIFY=1, DOCKER_CERT_PATH; see docs/security.md))",
    ],
    "duplicate_config_key.yaml": [
        "duplicate_config_key.yaml:17: entries.bad-key: duplicate key 'bad-key' (first defined on line 3) (allowed: each key once per mapping; merge or rename the duplicate)",
    ],
    "duplicate_keys.yaml": [
        "duplicate_keys.yaml:18: entries.bad-key.scenarios.fixed-seq-len[0].search-space[0].tp: duplicate key 'tp' (first defined on line 16) (allowed: each key once per mapping; merge or rename the duplicate)",
    ],
    "duplicate_top_level_key.yaml": [
        "duplicate_top_level_key.yaml:4: engine: duplicate key 'engine' (first defined on line 2) (allowed: each key once per mapping; merge or rename the duplicate)",
    ],
    "empty_file.yaml": [
        "empty_file.yaml:1: file is empty (allowed: a sweep file (starting 'sweep: <name>') or an InferenceX master file)",
    ],
    "empty_search_space.yaml": [
        "empty_search_space.yaml:13: bad-key: scenarios.fixed-seq-len[0].search-space: must not be empty (allowed: at least one item)",
    ],
    "entries_not_mapping.yaml": [
        "entries_not_mapping.yaml:2: entries: expected a mapping, got a list (allowed: key: value pairs)",
    ],
    "eval_limit_string.yaml": [
        "eval_limit_string.yaml:3: eval.limit: expected an integer, got 'all' (allowed: a whole number without quotes, e.g. 8)",
    ],
    "image_history_no_tag.yaml": [
        "image_history_no_tag.yaml:3: image-history: image 'vllm/vllm-openai' for 2026-06-12 has no tag (allowed: repo:tag or repo@sha256:digest)",
    ],
    "image_without_tag.yaml": [
        "image_without_tag.yaml:4: bad-key: image: image 'vllm/vllm-openai' has no tag; untagged images make results untraceable (allowed: a pinned tag or digest, e.g. vllm/vllm-openai:<tag> or vllm/vllm-openai@sha256:<digest>)",
    ],
    "inventory_bad_node.yaml": [
        "inventory_bad_node.yaml:4: inventory.h100[0].gpus: must be at least 1, got 0 (allowed: a value >= 1)",
        "inventory_bad_node.yaml:5: inventory.h100[1].docker_url: unknown key 'docker_url' (allowed: did you mean 'docker-url'? ",
    ],
    "isl_string.yaml": [
        "isl_string.yaml:13: bad-key: scenarios.fixed-seq-len[0].isl: expected an integer, got '1k' (allowed: a whole number without quotes, e.g. 8)",
    ],
    "many_errors.yaml": [
        "many_errors.yaml:2: engine: 'gpu' is not allowed (allowed: sim, vllm-docker, vllm-process or slurm)",
        "many_errors.yaml:5: first-key: image: image 'vllm/vllm-openai' has no tag; untagged images make results untraceable (allowed: a pinned tag or digest, e.g. vllm/vllm-openai:<tag> or vllm/vllm-openai@sha256:<digest>)",
        "many_errors.yaml:15: first-key: scenarios.fixed-seq-len[0].osl: must be greater than 0, got 0 (allowed: a value > 0)",
        "many_errors.yaml:17: first-key: scenarios.fixed-seq-len[0].search-space[0]: conc-start (8) is greater than conc-end (4) (allowed: conc-start <= conc-end)",
        "many_errors.yaml:25: second-key: multinode: expected true or false, got 'maybe' (allowed: true, false)",
        "many_errors.yaml:31: second-key: scenarios.fixed-seq-len[0].search-space[0].spec-decoding: 'eagle' is not allowed (allowed: none, mtp or draft_model)",
    ],
    "master_glob_no_match.yaml": [
        "master_glob_no_match.yaml:4: masters[0].config-keys[1]: 'dsr1-*' matches no config key in _ok_master.yaml (allowed: an existing config key or a glob such as minimaxm3-*)",
    ],
    "master_tp_not_power_of_two.yaml": [
        "master_tp_not_power_of_two.yaml:14: llama-bf16-h100-vllm: scenarios.fixed-seq-len[0].search-space[0].tp: tp 3 is not a power of two; vllm shards attention heads evenly over the tensor-parallel ranks and fails at start-up when they do not divide (allowed: tp: 2 or 4 (1, 2, 4, 8, ...), or dp-attn: true for data-parallel attention)",
    ],
    "missing_multinode.yaml": [
        "missing_multinode.yaml:3: bad-key: multinode: required key is missing (allowed: add 'multinode')",
    ],
    "missing_quirks_file.yaml": [
        "missing_quirks_file.yaml:2: quirks-files[0]: no-such-quirks.yaml: file not found (allowed: an existing file; relative paths start at the sweep file's folder)",
    ],
    "multinode_without_decode.yaml": [
        f"multinode_without_decode.yaml:17: {SCOPE}: multinode point has no decode block "
        "(allowed: prefill: {num-worker, tp, ep, dp-attn} and decode: {...})",
    ],
    "negative_conc_end.yaml": [
        f"negative_conc_end.yaml:16: {SCOPE}.conc-end: must be greater than 0, got -4 (allowed: a value > 0)",
    ],
    "negative_isl.yaml": [
        "negative_isl.yaml:13: bad-key: scenarios.fixed-seq-len[0].isl: must be greater than 0, got -1024 (allowed: a value > 0)",
    ],
    "negative_prompts.yaml": [
        "negative_prompts.yaml:3: bench.prompts-per-conc: must be greater than 0, got -5 (allowed: a value > 0)",
    ],
    "negative_time_scale.yaml": [
        "negative_time_scale.yaml:3: sim.time-scale: must be greater than 0.0, got -2 (allowed: a value > 0.0)",
    ],
    "no_scenarios.yaml": [
        "no_scenarios.yaml:11: bad-key: scenarios: no scenario given (allowed: fixed-seq-len and/or agentic-coding)",
    ],
    "not_a_config.yaml": [
        "not_a_config.yaml:1: neither a sweep file nor an InferenceX master file (allowed: a mapping with a top-level 'sweep: <name>' key, or config-key → entry)",
    ],
    # Neither upstream schema has it (the draft length is a quirk, quirks.<model>.spec-decoding.<method>), so
    # it is refused rather than accepted and ignored.
    "num_spec_tokens_not_a_master_field.yaml": [
        f"num_spec_tokens_not_a_master_field.yaml:16: {SCOPE}.num-speculative-tokens: unknown key 'num-speculative-tokens' (allowed: conc-end, conc-list, conc-start, dcp-size, decode, dp-attn, ep, kv-p2p-transfer, pcp-size, pp, prefill, router, spec-decoding, tp)",
    ],
    "single_node_with_prefill.yaml": [
        f"single_node_with_prefill.yaml:18: {SCOPE}.prefill: prefill blocks are only valid in multinode entries (allowed: use tp/ep/dp-attn here, or set multinode: true)",
    ],
    "tp_not_positive.yaml": [
        f"tp_not_positive.yaml:16: {SCOPE}.tp: must be greater than 0, got 0 (allowed: a value > 0)",
    ],
    "tp_not_power_of_two.yaml": [
        f"tp_not_power_of_two.yaml:16: {SCOPE}.tp: tp 6 is not a power of two; vllm shards attention heads evenly over the tensor-parallel ranks and fails at start-up when they do not divide (allowed: tp: 4 or 8 (1, 2, 4, 8, ...), or dp-attn: true for data-parallel attention)",
    ],
    "unknown_entry_key.yaml": ["unknown_entry_key.yaml:11: bad-key: notes: unknown key 'notes' (allowed: "],
    "unknown_key.yaml": [
        f"unknown_key.yaml:16: {SCOPE}.conc-stop: unknown key 'conc-stop' (allowed: did you mean 'conc-list'? ",
    ],
    "unknown_runner.yaml": [
        "unknown_runner.yaml:7: bad-key: runner: unknown runner label 'h10' (allowed: did you mean 'h100'? labels in runners.yaml / inventory: h100)",
    ],
    "unknown_spec_decoding.yaml": [
        f"unknown_spec_decoding.yaml:16: {SCOPE}.spec-decoding: 'eagle' is not allowed (allowed: none, mtp or draft_model)",
    ],
    "unknown_top_level_key.yaml": [
        "unknown_top_level_key.yaml:2: engnie: unknown key 'engnie' (allowed: did you mean 'engine'? ",
    ],
    "wrong_type_tp.yaml": [
        f"wrong_type_tp.yaml:16: {SCOPE}.tp: expected an integer, got 'eight' (allowed: a whole number without quotes, e.g. 8)",
    ],
    "yaml_bad_indent.yaml": [
        "yaml_bad_indent.yaml:3: engine.schedule: YAML syntax error: mapping values are not allowed in this context (allowed: valid YAML; check indentation, quotes and ':' after keys)",
    ],
    "yaml_syntax.yaml": [
        "yaml_syntax.yaml:6: entries.bad-key.model: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence started on line 5) (allowed: valid YAML; check indentation, quotes and ':' after keys)",
    ],
    "yaml_tab_indent.yaml": [
        "yaml_tab_indent.yaml:4: schedule: YAML syntax error: found a tab character that violates indentation (while scanning a plain scalar started on line 3) (allowed: valid YAML; check indentation, quotes and ':' after keys)",
    ],
    "yaml_unclosed_quote.yaml": [
        "yaml_unclosed_quote.yaml:3: description: YAML syntax error: found unexpected end of stream (while scanning a quoted scalar started on line 2) (allowed: valid YAML; check indentation, quotes and ':' after keys)",
    ],
}


def corpus_files() -> list[str]:
    """The bad sweep files (helpers starting with `_` are valid inputs the bad files refer to)."""
    return sorted(p.name for p in CORPUS.glob("*.yaml") if not p.name.startswith("_"))


def test_corpus_is_complete() -> None:
    """Every bad config file has pinned messages, and at least 30 exist."""
    assert set(corpus_files()) == set(EXPECTED)
    assert len(EXPECTED) >= 30


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_config_message(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each malformed file fails with exactly its pinned issues (a trailing space marks a pinned prefix)."""
    monkeypatch.chdir(CORPUS)
    with pytest.raises(ConfigError) as info:
        load_sweep([Path(name)])
    got = [str(issue) for issue in info.value.issues]
    expected = EXPECTED[name]
    assert len(got) == len(expected), got
    for message, want in zip(got, expected, strict=True):
        if want.endswith(" "):
            assert message.startswith(want), message
        else:
            assert message == want


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_message_names_file_line_key_and_fix(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parts of each message, checked as data rather than text: file, line, key path, fix."""
    monkeypatch.chdir(CORPUS)
    with pytest.raises(ConfigError) as info:
        load_sweep([Path(name)])
    issues = info.value.issues
    assert len(issues) == 1 or name in SEVERAL, [str(i) for i in issues]
    for issue in issues:
        assert issue.file == name, issue
        assert isinstance(issue.line, int) and issue.line >= 1, issue
        assert issue.config_key or issue.field_path or name in WHOLE_FILE, issue
        assert issue.allowed, f"no fix given: {issue}"
        # The line points into the file and, for key problems, at a line that mentions the key.
        lines = (CORPUS / name).read_text().splitlines() or [""]
        assert issue.line <= len(lines), issue
        last = (issue.field_path or "").rsplit(".", 1)[-1].split("[")[0]
        if last and "YAML syntax" not in issue.message and "missing" not in issue.message \
                and "[" not in (issue.field_path or "").rsplit(".", 1)[-1]:
            assert last in lines[issue.line - 1] or last in "\n".join(lines[: issue.line]), issue


def test_error_text_lists_every_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exception text (what the CLI prints) has a count header and one line per issue."""
    monkeypatch.chdir(CORPUS)
    with pytest.raises(ConfigError) as info:
        load_sweep([Path("many_errors.yaml")])
    lines = str(info.value).splitlines()
    assert lines[0] == "6 configuration errors:"
    assert len(lines) == 7


def test_config_errors_are_permanent_failures() -> None:
    """A plan task that hits a ConfigError fails at once: retrying cannot fix a file."""
    from infersweep.faults.classify import classify

    with pytest.raises(ConfigError) as info:
        load_sweep([CORPUS / "conc_start_gt_end.yaml"])
    failure = classify(info.value)
    assert failure.kind == "config_error" and not failure.transient


def test_helpers_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The corpus' `_ok_*` helpers load, so each bad file fails for its own reason only."""
    monkeypatch.chdir(CORPUS)
    sweep = load_sweep([Path("_ok_sweep.yaml"), Path("_ok_master.yaml")])
    assert set(sweep.entries) == {"bad-key", "llama-bf16-h100-vllm"}


def test_power_of_two_tp_rule_spares_dp_attention_and_other_frameworks(tmp_path: Path) -> None:
    """tp 6 is fine as a DP size (dp-attn) and for frameworks without vLLM's head-sharding rule."""
    base = (CORPUS / "_ok_sweep.yaml").read_text()
    dpa = base.replace("{ tp: 8, conc-start: 1, conc-end: 8 }", "{ tp: 6, ep: 6, dp-attn: true, conc-list: [8] }")
    sglang = base.replace("framework: vllm", "framework: sglang").replace("tp: 8,", "tp: 6,")
    for name, text in (("dpa.yaml", dpa), ("sglang.yaml", sglang)):
        (tmp_path / name).write_text(text)
        assert set(load_sweep([tmp_path / name]).entries) == {"bad-key"}
