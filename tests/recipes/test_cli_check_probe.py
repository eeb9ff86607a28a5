"""The argv probe's parsing logic, against a stdlib parser shaped like `vllm serve`'s (no vLLM needed)."""

from __future__ import annotations

import argparse
from typing import Literal

import pytest

from infersweep.recipes.vllm_argparse_probe import _literal_values, check_argv, strict_parser_class


@pytest.fixture()
def parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """A top-level parser with a `serve` sub-parser, built the way vLLM's CLI builds them."""
    strict = strict_parser_class(argparse.ArgumentParser)
    top = strict(prog="vllm")
    sub = top.add_subparsers(dest="subparser")
    serve = sub.add_parser("serve")
    serve.add_argument("model_tag", nargs="?")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    serve.add_argument("--max-num-seqs", type=int)
    serve.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction)
    old = serve.add_argument("--disable-log-requests", action="store_true")
    serve._deprecated = {old}  # type: ignore[attr-defined]  # vLLM's FlexibleArgumentParser keeps this set
    return top, serve


def _argv(*flags: str) -> list[str]:
    return ["vllm", "serve", "org/model", *flags]


def test_a_known_argv_is_ok(parsers) -> None:
    top, serve = parsers
    res = check_argv(_argv("--port", "8888", "-tp", "8", "--no-enable-prefix-caching"), top, serve)
    assert res["status"] == "ok"
    assert res["unknown_flags"] == [] and res["message"] is None


def test_unknown_flags_are_listed_with_their_values(parsers) -> None:
    top, serve = parsers
    res = check_argv(_argv("--port", "8888", "--block-size", "128", "--language-model-only"), top, serve)
    assert res["status"] == "unknown-flags"
    assert res["unknown_flags"] == ["--block-size", "--language-model-only"]
    assert res["unknown_args"] == ["--block-size", "128", "--language-model-only"]
    assert res["message"].startswith("unrecognized arguments")


def test_an_invalid_value_is_invalid_and_still_names_unknown_flags(parsers) -> None:
    top, serve = parsers
    res = check_argv(_argv("--port", "eighty", "--stream-interval", "20"), top, serve)
    assert res["status"] == "invalid"
    assert "--port" in res["message"] and "eighty" in res["message"]
    # argparse stopped at the bad value; the unknown flag is found by name.
    assert res["unknown_flags"] == ["--stream-interval"]


def test_a_negative_number_value_is_not_a_flag(parsers) -> None:
    top, serve = parsers
    res = check_argv(_argv("--seed", "-1"), top, serve)
    assert res["status"] == "unknown-flags"
    assert res["unknown_flags"] == ["--seed"]
    assert res["unknown_args"] == ["--seed", "-1"]


def test_abbreviations_parse_but_are_reported(parsers) -> None:
    top, serve = parsers
    res = check_argv(_argv("--max-num-seq", "4", "--tensor-parallel-size=2"), top, serve)
    assert res["status"] == "ok"
    assert res["abbreviated_flags"] == ["--max-num-seq"]


def test_deprecated_flags_are_reported(parsers) -> None:
    top, serve = parsers
    res = check_argv(_argv("--disable-log-requests"), top, serve)
    assert res["status"] == "ok"
    assert res["deprecated_flags"] == ["--disable-log-requests"]


def test_an_argv_that_is_not_vllm_serve(parsers) -> None:
    top, serve = parsers
    res = check_argv(["python", "-m", "sim"], top, serve)
    assert res["status"] == "not-serve"


def test_help_and_exit_do_not_leave_the_probe(parsers) -> None:
    top, serve = parsers
    res = check_argv(_argv("--help"), top, serve)
    assert res["status"] == "invalid"
    assert res["message"] == "the parser exited with status 0"


def test_validation_hooks_and_extra_checks_make_it_invalid(parsers) -> None:
    top, serve = parsers

    def validate(ns: argparse.Namespace) -> None:
        if ns.tensor_parallel_size > 4:
            raise ValueError("tp too large")

    res = check_argv(_argv("-tp", "8"), top, serve, validate, [lambda ns: "port clash" if ns.port == 8000 else None])
    assert res["status"] == "invalid"
    assert res["message"] == "ValueError: tp too large; port clash"


def test_the_parser_is_reusable_between_argvs(parsers) -> None:
    top, serve = parsers
    assert check_argv(_argv("--bogus"), top, serve)["status"] == "unknown-flags"
    assert check_argv(_argv("--port", "1"), top, serve)["status"] == "ok"


def test_literal_values_of_nested_optional_literals() -> None:
    inner = Literal["a", "b"]
    assert _literal_values(Literal["x", inner] | None) == {"x", "a", "b", None}
    assert _literal_values(str | None) is None
