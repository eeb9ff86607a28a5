"""Parse serve argvs with an installed vLLM's own `vllm serve` argument parser, without starting anything.

Run by the vLLM venv's interpreter, not imported by infersweep at runtime, so it uses only the standard
library and vLLM:

    .venv-vllm/bin/python -I vllm_argparse_probe.py REQUEST.json RESPONSE.json

`-I` matters: this folder holds `vllm.py` (the recipe builder), which would shadow the real `vllm` package
if the script's directory were on `sys.path`. The request is `{"recipes": [{"id", "argv"}]}` with argvs that
start `vllm serve MODEL`; the response is `{"vllm_version", "python", "parser", "results": [...]}` with one
result per recipe: status `ok` / `unknown-flags` / `invalid` / `not-serve`, the flags the parser does not
know, the error message, deprecated flags and abbreviated flags (argparse accepts unique prefixes; vLLM
would then read a different flag than the recipe names).

The parser is built exactly as `vllm` builds it (`vllm.entrypoints.cli.main`): a top-level
FlexibleArgumentParser with a `serve` sub-parser from `ServeSubcommand.subparser_init`, then
`ServeSubcommand.validate` (vLLM's pre-start checks). `--config FILE`, `-O`/`-O3`, dotted JSON keys
(`--compilation-config.mode 3`) and `--model` all go through vLLM's own pre-processing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable, Iterable
from typing import Any

#: argv[:2] of a vLLM serve recipe.
SERVE_HEAD = ("vllm", "serve")


class ParseFailure(Exception):
    """argparse called `error()`/`exit()`; carries the message and the arguments it did not recognise."""

    def __init__(self, message: str, extras: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.extras = list(extras)


def strict_parser_class(base: type[argparse.ArgumentParser]) -> type[argparse.ArgumentParser]:
    """A subclass of `base` that raises ParseFailure instead of printing usage and exiting.

    Sub-parsers inherit it (`add_subparsers` uses `type(parent)`), so a `serve` error raises too. The
    unrecognised arguments are remembered from `parse_known_args`, where argparse collects them before
    `parse_args` turns them into the "unrecognized arguments" error.
    """

    class StrictParser(base):  # type: ignore[valid-type,misc]
        _probe_extras: list[str]

        def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
            self._probe_extras = []
            parsed, extras = super().parse_known_args(args, namespace)
            self._probe_extras = list(extras)
            return parsed, extras

        def error(self, message: str) -> Any:
            raise ParseFailure(message, getattr(self, "_probe_extras", []))

        def exit(self, status: int = 0, message: str | None = None) -> Any:
            raise ParseFailure((message or "").strip() or f"the parser exited with status {status}")

    StrictParser.__name__ = f"Strict{base.__name__}"
    return StrictParser


def _is_flag(arg: str) -> bool:
    if not arg.startswith("-") or len(arg) == 1:
        return False
    try:
        float(arg)
    except ValueError:
        return True
    return False  # a negative number is a value


def _flag_name(token: str) -> str:
    """`--max_model_len=8` -> `--max-model-len`; `--compilation-config.mode` -> `--compilation-config`."""
    name = token.split("=", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].split(".", 1)[0].replace("_", "-")
    return name


def _deprecated_flags(serve: argparse.ArgumentParser, namespace: argparse.Namespace) -> list[str]:
    """Flags the recipe set that the parser marks deprecated (vLLM's own set before 3.13, argparse's after)."""
    marked: set[argparse.Action] = getattr(serve, "_deprecated", set())
    out = []
    for action in serve._actions:
        if not action.option_strings or not (action in marked or getattr(action, "deprecated", False)):
            continue
        if hasattr(namespace, action.dest) and getattr(namespace, action.dest) != action.default:
            out.append(next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0]))
    return sorted(set(out))


def _long_flags(serve: argparse.ArgumentParser, args: list[str]) -> tuple[list[str], list[str]]:
    """(abbreviated, unknown) long flags of `args`, by name alone.

    argparse accepts a unique prefix of a flag (`--max-num-seq` for `--max-num-seqs`), so vLLM would read
    another flag than the recipe names: that is reported, not failed. A name that is neither a flag nor a
    unique prefix of one is unknown; this finds those even when a bad value stopped argparse first.
    """
    known = set(serve._option_string_actions)
    abbreviated, unknown = set(), set()
    for arg in args:
        if not arg.startswith("--") or len(arg) == 2:
            continue
        name = _flag_name(arg)
        if name in known:
            continue
        if sum(k.startswith(name) for k in known if k.startswith("--")) == 1 and serve.allow_abbrev:
            abbreviated.add(name)
        else:
            unknown.add(name)
    return sorted(abbreviated), sorted(unknown)


def check_argv(
    argv: list[str],
    top: argparse.ArgumentParser,
    serve: argparse.ArgumentParser,
    validate: Callable[[argparse.Namespace], None] | None = None,
    extra_checks: Iterable[Callable[[argparse.Namespace], str | None]] = (),
) -> dict[str, Any]:
    """Parse one recipe argv (`vllm serve MODEL …`) with `top` (whose `serve` sub-parser is `serve`).

    `top` and `serve` must be strict parsers (`strict_parser_class`). Returns the result dict of the probe
    protocol; never raises for a bad argv.
    """
    result: dict[str, Any] = {"status": "ok", "unknown_flags": [], "unknown_args": [], "message": None,
                              "deprecated_flags": [], "abbreviated_flags": []}
    if tuple(argv[:2]) != SERVE_HEAD or len(argv) < 3:
        result.update(status="not-serve", message=f"argv does not start with 'vllm serve MODEL': {argv[:3]}")
        return result
    args = ["serve", *argv[2:]]
    try:
        namespace = top.parse_args(args)
    except ParseFailure as exc:
        unknown = [t for t in exc.extras if _is_flag(t)]
        if exc.message.startswith("unrecognized arguments") and exc.extras:
            result.update(status="unknown-flags" if unknown else "invalid", unknown_args=exc.extras,
                          unknown_flags=sorted({_flag_name(t) for t in unknown}), message=exc.message)
        else:
            result.update(status="invalid", message=exc.message, unknown_flags=_long_flags(serve, args[1:])[1])
        return result
    except Exception as exc:  # vLLM's pre-processing raises ValueError/AssertionError for e.g. a bad --config
        result.update(status="invalid", message=f"{type(exc).__name__}: {exc}")
        return result
    result["deprecated_flags"] = _deprecated_flags(serve, namespace)
    result["abbreviated_flags"] = _long_flags(serve, args[1:])[0]
    problems = []
    for check in ([validate] if validate else []):
        try:
            check(namespace)
        except Exception as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
    for extra in extra_checks:
        try:
            message = extra(namespace)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
        if message:
            problems.append(message)
    if problems:
        result.update(status="invalid", message="; ".join(problems))
    return result


# --- vLLM side ---------------------------------------------------------------------------------------


def _literal_values(annotation: Any) -> set[Any] | None:
    """All values of a (nested, Optional) Literal annotation; None when it is not purely Literal."""
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return set(typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        values: set[Any] = set()
        for arg in typing.get_args(annotation):
            if arg is type(None):
                values.add(None)
                continue
            sub = _literal_values(arg)
            if sub is None:
                return None
            values |= sub
        return values
    return None


def speculative_config_check(namespace: argparse.Namespace) -> str | None:
    """`--speculative-config` is only JSON-decoded at parse time (vLLM validates it when it builds the engine
    config, after loading model configs); check its keys and `method` against SpeculativeConfig here."""
    spec = getattr(namespace, "speculative_config", None)
    if not isinstance(spec, dict):
        return None
    import dataclasses

    from vllm.config.speculative import SpeculativeConfig

    fields = {f.name: f for f in dataclasses.fields(SpeculativeConfig)}
    unknown = sorted(k.replace("-", "_") for k in spec if k.replace("-", "_") not in fields)
    if unknown:
        return f"--speculative-config: unknown keys {unknown} (SpeculativeConfig has no such fields)"
    method = spec.get("method")
    if method is not None:
        try:
            import typing

            hints = typing.get_type_hints(SpeculativeConfig)
            allowed = _literal_values(hints.get("method"))
        except Exception:  # annotations that do not resolve: skip the method check, keep the key check
            allowed = None
        if allowed is not None and method not in allowed:
            return f"--speculative-config: method {method!r} is not one of {sorted(v for v in allowed if v)}"
    return None


def build_vllm_serve_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser,
                                       Callable[[argparse.Namespace], None] | None, str]:
    """(top-level parser, serve sub-parser, vLLM's serve validation, description) built as `vllm` builds them."""
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # vLLM before the utils split
        from vllm.utils import FlexibleArgumentParser  # type: ignore[attr-defined,no-redef]
    strict = strict_parser_class(FlexibleArgumentParser)
    top = strict(prog="vllm", description="vLLM CLI")
    subparsers = top.add_subparsers(required=False, dest="subparser")
    try:
        from vllm.entrypoints.cli.serve import ServeSubcommand
    except ImportError:
        pass
    else:
        command = ServeSubcommand()
        serve = command.subparser_init(subparsers)
        return top, serve, command.validate, "vllm.entrypoints.cli.serve.ServeSubcommand.subparser_init"
    try:  # older layouts: the OpenAI server's own parser factory
        from vllm.entrypoints.openai.cli_args import make_arg_parser  # type: ignore[import-not-found]
        where = "vllm.entrypoints.openai.cli_args.make_arg_parser"
    except ImportError:
        from vllm.entrypoints.launchers.cli_args import make_arg_parser  # type: ignore[import-not-found,no-redef]
        where = "vllm.entrypoints.launchers.cli_args.make_arg_parser"
    serve = make_arg_parser(subparsers.add_parser("serve", usage="vllm serve [model_tag] [options]"))
    return top, serve, None, where


def _vllm_version() -> str:
    try:
        from vllm import __version__
        return str(__version__)
    except ImportError:
        from importlib.metadata import version
        return version("vllm")


def run(request: dict[str, Any]) -> dict[str, Any]:
    """Answer a probe request with the installed vLLM."""
    top, serve, validate, where = build_vllm_serve_parser()
    results = []
    for item in request["recipes"]:
        res = check_argv(list(item["argv"]), top, serve, validate, [speculative_config_check])
        results.append({"id": item["id"], **res})
    return {"vllm_version": _vllm_version(), "python": platform.python_version(), "parser": where,
            "results": results}


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: python -I vllm_argparse_probe.py REQUEST.json RESPONSE.json\n")
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    # Without -I the script's folder (holding recipes/vllm.py) would shadow the vllm package.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    with open(argv[1], encoding="utf-8") as fh:
        request = json.load(fh)
    response = run(request)
    tmp = argv[2] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(response, fh)
    os.replace(tmp, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
