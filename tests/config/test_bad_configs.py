"""The malformed-config corpus: every file in tests/fixtures/bad_configs is pinned to its full message list."""

from __future__ import annotations

from pathlib import Path

import pytest

from infersweep.config.errors import ConfigError
from infersweep.config.sweep import load_sweep

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "bad_configs"
SCOPE = "bad-key: scenarios.fixed-seq-len[0].search-space[0]"

EXPECTED: dict[str, list[str]] = {
    "bad_engine.yaml": ["bad_engine.yaml:2: engine: 'docker' is not allowed (allowed: sim, vllm-docker or vllm-process)"],
    "bad_eval.yaml": [
        "bad_eval.yaml:3: eval.task: 'mmlu' is not allowed (allowed: gsm8k)",
        "bad_eval.yaml:4: eval.default-threshold: must be at most 1.0, got 1.5",
    ],
    "bad_image_pattern.yaml": [
        "bad_image_pattern.yaml:2: image-tag-pattern: unknown template variable {{ date }} "
        "(allowed: ds, ds_nodash, yyyy, mm, dd)"
    ],
    "bad_quirks.yaml": [
        "bad_quirks.yaml:4: minimaxm3: gmu: must be at most 1.0, got 1.5",
        "bad_quirks.yaml:5: minimaxm3: extra-flags: unknown key 'extra-flags' (allowed: did you mean 'extra-serve-flags'? ",
    ],
    "bad_schedule.yaml": [
        "bad_schedule.yaml:2: schedule: 'every night at two' is not a cron schedule "
        "(allowed: 5 cron fields like '0 2 * * *', a preset like @daily, or null for manual runs)"
    ],
    "bool_as_string.yaml": [
        f"bool_as_string.yaml:16: {SCOPE}.dp-attn: expected true or false, got 'yes' (allowed: true, false)"
    ],
    "conc_end_missing.yaml": [
        f"conc_end_missing.yaml:16: {SCOPE}: conc-end is missing; conc-start and conc-end go together "
        "(allowed: add conc-end, or use conc-list)"
    ],
    "conc_list_with_start.yaml": [
        f"conc_list_with_start.yaml:16: {SCOPE}: conc-list cannot be combined with conc-start/conc-end "
        "(allowed: either conc-list: [..] or conc-start + conc-end)"
    ],
    "conc_list_zero.yaml": [f"conc_list_zero.yaml:16: {SCOPE}.conc-list[1]: must be greater than 0, got 0"],
    "conc_start_gt_end.yaml": [
        f"conc_start_gt_end.yaml:16: {SCOPE}: conc-start (64) is greater than conc-end (4) "
        "(allowed: conc-start <= conc-end)"
    ],
    "disagg_without_multinode.yaml": [
        "disagg_without_multinode.yaml:11: bad-key: disagg: true requires multinode: true (disaggregated "
        "prefill/decode spans nodes) (allowed: set multinode: true (with prefill/decode blocks), or drop disagg)"
    ],
    "duplicate_keys.yaml": [
        "duplicate_keys.yaml:18: entries.bad-key.scenarios.fixed-seq-len[0].search-space[0]: duplicate key 'tp' "
        "(first defined on line 16) (allowed: each key once per mapping; merge or rename the duplicate)"
    ],
    "empty_search_space.yaml": [
        "empty_search_space.yaml:13: bad-key: scenarios.fixed-seq-len[0].search-space: must not be empty"
    ],
    "image_without_tag.yaml": [
        "image_without_tag.yaml:4: bad-key: image: image 'vllm/vllm-openai' has no tag; untagged images make "
        "results untraceable (allowed: a pinned tag or digest, e.g. vllm/vllm-openai:<tag> or "
        "vllm/vllm-openai@sha256:<digest>)"
    ],
    "inventory_bad_node.yaml": [
        "inventory_bad_node.yaml:4: inventory.h100[0].gpus: must be at least 1, got 0",
        "inventory_bad_node.yaml:5: inventory.h100[1].docker_url: unknown key 'docker_url' "
        "(allowed: did you mean 'docker-url'? ",
    ],
    "many_errors.yaml": [
        "many_errors.yaml:2: engine: 'gpu' is not allowed (allowed: sim, vllm-docker or vllm-process)",
        "many_errors.yaml:5: first-key: image: image 'vllm/vllm-openai' has no tag; ",
        "many_errors.yaml:15: first-key: scenarios.fixed-seq-len[0].osl: must be greater than 0, got 0",
        "many_errors.yaml:17: first-key: scenarios.fixed-seq-len[0].search-space[0]: conc-start (8) is greater "
        "than conc-end (4) (allowed: conc-start <= conc-end)",
        "many_errors.yaml:25: second-key: multinode: expected true or false, got 'maybe' (allowed: true, false)",
        "many_errors.yaml:31: second-key: scenarios.fixed-seq-len[0].search-space[0].spec-decoding: 'eagle' is "
        "not allowed (allowed: none, mtp or draft_model)",
    ],
    "master_glob_no_match.yaml": [
        "master_glob_no_match.yaml:4: masters[0].config-keys[1]: 'dsr1-*' matches no config key in "
        "_ok_master.yaml (allowed: an existing config key or a glob such as minimaxm3-*)"
    ],
    "missing_multinode.yaml": [
        "missing_multinode.yaml:3: bad-key: multinode: required key is missing (allowed: add 'multinode')"
    ],
    "missing_quirks_file.yaml": ["no-such-quirks.yaml: file not found (referenced at missing_quirks_file.yaml:2)"],
    "multinode_without_decode.yaml": [
        "multinode_without_decode.yaml:17: bad-key: scenarios.fixed-seq-len[0].search-space[0]: multinode point "
        "has no decode block (allowed: prefill: {num-worker, tp, ep, dp-attn} and decode: {...})"
    ],
    "negative_isl.yaml": [
        "negative_isl.yaml:13: bad-key: scenarios.fixed-seq-len[0].isl: must be greater than 0, got -1024"
    ],
    "no_scenarios.yaml": [
        "no_scenarios.yaml:11: bad-key: scenarios: no scenario given (allowed: fixed-seq-len and/or agentic-coding)"
    ],
    "not_a_config.yaml": [
        "not_a_config.yaml:1: neither a sweep file nor an InferenceX master file "
        "(allowed: a mapping with a top-level 'sweep: <name>' key, or config-key → entry)"
    ],
    "num_spec_tokens_without_spec.yaml": [
        f"num_spec_tokens_without_spec.yaml:16: {SCOPE}.num-speculative-tokens: num-speculative-tokens needs "
        "spec-decoding (allowed: set spec-decoding: mtp or draft_model, or drop num-speculative-tokens)"
    ],
    "single_node_with_prefill.yaml": [
        f"single_node_with_prefill.yaml:18: {SCOPE}.prefill: prefill blocks are only valid in multinode entries "
        "(allowed: use tp/ep/dp-attn here, or set multinode: true)"
    ],
    "tp_not_positive.yaml": [f"tp_not_positive.yaml:16: {SCOPE}.tp: must be greater than 0, got 0"],
    "unknown_key.yaml": [
        f"unknown_key.yaml:16: {SCOPE}.conc-stop: unknown key 'conc-stop' (allowed: did you mean 'conc-list'? "
        "conc-end, conc-list, conc-start, dcp-size, decode, dp-attn, ep, kv-p2p-transfer, max-num-batched-tokens, "
        "num-speculative-tokens, pcp-size, pp, prefill, router, spec-decoding, tp)"
    ],
    "unknown_runner.yaml": [
        "unknown_runner.yaml:7: bad-key: runner: unknown runner label 'h10' "
        "(allowed: did you mean 'h100'? labels in runners.yaml / inventory: h100)"
    ],
    "unknown_spec_decoding.yaml": [
        f"unknown_spec_decoding.yaml:16: {SCOPE}.spec-decoding: 'eagle' is not allowed "
        "(allowed: none, mtp or draft_model)"
    ],
    "wrong_type_tp.yaml": [f"wrong_type_tp.yaml:16: {SCOPE}.tp: expected an integer, got 'eight'"],
    "yaml_syntax.yaml": [
        "yaml_syntax.yaml:6: YAML syntax error: did not find expected ',' or ']' (while parsing a flow sequence "
        "started on line 5) (allowed: valid YAML; check indentation, quotes and ':' after keys)"
    ],
}


def test_corpus_is_complete() -> None:
    """Every bad config file has pinned messages (helpers starting with `_` are valid inputs), and ≥ 20 exist."""
    files = {p.name for p in CORPUS.glob("*.yaml") if not p.name.startswith("_")}
    assert files == set(EXPECTED)
    assert len(files) >= 20


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


def test_error_text_lists_every_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exception text (what the CLI prints) has a count header and one line per issue."""
    monkeypatch.chdir(CORPUS)
    with pytest.raises(ConfigError) as info:
        load_sweep([Path("many_errors.yaml")])
    lines = str(info.value).splitlines()
    assert lines[0] == "6 configuration errors:"
    assert len(lines) == 7


def test_helpers_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The corpus' `_ok_*` helpers load, so each bad file fails for its own reason only."""
    monkeypatch.chdir(CORPUS)
    sweep = load_sweep([Path("_ok_sweep.yaml"), Path("_ok_master.yaml")])
    assert set(sweep.entries) == {"bad-key", "llama-bf16-h100-vllm"}
