"""Pure pieces of the Airflow layer: trigger params, the classifier-driven retry policy, pool bootstrap."""

from __future__ import annotations

from datetime import timedelta

import pytest
from airflow.sdk import RetryAction
from airflow.sdk.definitions.param import ParamsDict
from airflow.sdk.exceptions import ParamValidationError

from infersweep.airflow.bootstrap import desired_pools, pool_name
from infersweep.airflow.params import build_params
from infersweep.airflow.retry import FailureClassRetryPolicy
from infersweep.config.inventory import Node


def _params() -> ParamsDict:
    return ParamsDict(
        build_params(seq_lens={"1k1k", "8k1k"}, tps={4, 8}, eps={1, 8}, concs={4, 8, 16}, default_engine="sim",
                     eval_enabled=True)
    )


def test_defaults_validate() -> None:
    resolved = _params().validate()
    assert resolved["engine"] == "sim" and resolved["dry_run"] is False and resolved["tp"] == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tp", [3]),  # not a TP the config has
        ("tp", ["3"]),  # nor as the form's string
        ("tp", ["eight"]),
        ("concs", [5]),
        ("seq_lens", ["1k8k"]),
        ("engine", "trt"),
        ("image", "vllm/vllm-openai"),  # no tag
        ("dp_attn", "yes"),
        ("force", "true"),
    ],
)
def test_bad_params_are_rejected(key: str, value: object) -> None:
    params = _params()
    # ParamsDict validates on assignment, exactly as a REST/UI trigger does with its conf.
    with pytest.raises(ParamValidationError, match=f"param {key}"):
        params[key] = value
        params.validate()


def test_good_overrides_pass() -> None:
    params = _params()
    params.update({"tp": [8], "concs": [4, 16], "image": "vllm/vllm-openai:v0.11.0", "dp_attn": "true"})
    assert params.validate()["concs"] == [4, 16]


def test_form_shape_follows_airflows_trigger_form() -> None:
    """Airflow 3.3's form: an array with top-level `examples` is a multi-select, a scalar with `enum` a
    select, a type without null is required. Descriptions are plain text (no Python reprs)."""
    params = build_params(seq_lens={"1k1k", "8k1k"}, tps={4, 8}, eps={1, 8}, concs={4, 8, 16}, default_engine="sim",
                          eval_enabled=True)
    schemas = {k: p.schema for k, p in params.items()}
    for key, allowed in (("seq_lens", ["1k1k", "8k1k"]), ("tp", [4, 8]), ("ep", [1, 8]), ("concs", [4, 8, 16])):
        assert schemas[key]["type"] == ["array", "null"] and schemas[key]["examples"] == allowed, key
        assert params[key].description.endswith("Allowed: " + ", ".join(map(str, allowed)) + "."), key
    for key, options in (("engine", ["sim", "vllm-docker", "vllm-process", "slurm"]), ("dp_attn", ["any", "true", "false"])):
        assert schemas[key]["type"] == "string" and schemas[key]["enum"] == options
    assert all(p.description and "[" not in p.description for p in params.values())


def test_form_choices_arrive_as_strings_and_steps_read_ints() -> None:
    from infersweep.airflow.params import param_values

    params = _params()
    # What the form's multi-selects send: chosen integers as strings, a cleared selection as null.
    params.update({"tp": ["8"], "concs": ["16", "4"], "seq_lens": None, "ep": None})
    values = param_values(params.validate())
    assert (values["tp"], values["concs"], values["seq_lens"], values["ep"]) == ([8], [16, 4], [], [])
    assert param_values({"tp": [8, "8"], "engine": "sim"}) == {"tp": [8], "engine": "sim"}


def test_advanced_conf_is_validated_before_anything_starts() -> None:
    from infersweep.airflow.params import advanced_conf
    from infersweep.faults import ClassifiedError, classify

    ok = advanced_conf({"model": "/models/smollm2", "eval_limit": 20, "sim_time_scale": 5, "tp": [8]})
    assert (ok.model, ok.eval_limit, ok.sim_time_scale) == ("/models/smollm2", 20, 5.0)
    with pytest.raises(ClassifiedError, match="eval_limit") as bad:
        advanced_conf({"eval_limit": 0})
    assert classify(bad.value).kind == "config_error" and not classify(bad.value).transient


class _Boom(Exception):
    pass


def test_retry_policy_follows_the_classifier() -> None:
    policy = FailureClassRetryPolicy(base_delay_s=10, max_delay_s=100)
    permanent = policy.evaluate(RuntimeError("ValueError: No available memory for the cache blocks."), 1, 4)
    assert permanent.action is RetryAction.FAIL
    transient = policy.evaluate(OSError(116, "Stale file handle"), 1, 4)
    assert transient.action is RetryAction.RETRY and transient.retry_delay == timedelta(seconds=10)
    later = policy.evaluate(OSError(116, "Stale file handle"), 3, 4)
    assert later.retry_delay == timedelta(seconds=40)
    capped = policy.evaluate(OSError(116, "Stale file handle"), 9, 10)
    assert capped.retry_delay == timedelta(seconds=100)
    unknown_first = policy.evaluate(_Boom("something nobody has seen"), 1, 4)
    unknown_second = policy.evaluate(_Boom("something nobody has seen"), 2, 4)
    assert unknown_first.action is RetryAction.RETRY and unknown_second.action is RetryAction.FAIL
    assert FailureClassRetryPolicy.deserialize(policy.serialize()).max_delay_s == 100


def test_retry_policy_default_backoff_and_reason_names_the_class() -> None:
    """Defaults: 15 s doubling per try, capped at 600 s; the decision's reason names the failure class."""
    policy = FailureClassRetryPolicy()
    stale = OSError(116, "Stale file handle")
    delays = [policy.evaluate(stale, t, 30).retry_delay for t in (1, 2, 3, 4, 20)]
    assert delays == [timedelta(seconds=s) for s in (15, 30, 60, 120, 600)]
    assert "stale_file_handle" in (policy.evaluate(stale, 1, 4).reason or "")
    permanent = policy.evaluate(RuntimeError("ValueError: No available memory for the cache blocks."), 1, 4)
    assert permanent.action is RetryAction.FAIL and "kv_cache_oom" in (permanent.reason or "")


def test_pools_one_per_runner_label_with_node_slots() -> None:
    inv = {
        "h200": [Node(name="h200-a", runner="h200"), Node(name="h200-b", runner="h200")],
        "cluster:b200-dgxc": [Node(name="b", runner="cluster:b200-dgxc")],
        "empty": [],
    }
    pools = desired_pools(inv)
    assert pools == {
        "infersweep-cluster-b200-dgxc": (1, "infersweep: GPU nodes with runner label 'cluster:b200-dgxc'"),
        "infersweep-h200": (2, "infersweep: GPU nodes with runner label 'h200'"),
    }
    assert pool_name("h100") == "infersweep-h100"
