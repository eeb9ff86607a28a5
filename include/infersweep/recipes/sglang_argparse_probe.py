"""Parse SGLang launch argvs with an installed SGLang's own `ServerArgs` argument parser, starting nothing.

Run by the SGLang lane's interpreter (scripts/sglang_lane/install.sh), never imported by infersweep, so it uses
only the standard library and SGLang:

    .venv-sglang/bin/python -I sglang_argparse_probe.py < ARGVS.json > RESULT.json

`-I` matters: this folder holds `sglang.py` (the recipe builder), which would shadow the real `sglang` package
if the script's directory were on `sys.path` (main() removes it too).

Input (stdin): a JSON list of argv lists, each a whole launch: `python3 -m sglang.launch_server --model-path M …`
or `sglang serve --model-path M …` (the launcher tokens are skipped; `python`/`python3.x` also count).
Output (stdout, one JSON document): `{"sglang_version", "python", "parser", "option_strings", "stubs",
"seconds": {"import", "parse"}, "results": [...]}` with one result per input argv, in order:

    {"status": "ok" | "unknown-flags" | "invalid" | "not-sglang",
     "launcher": the skipped tokens, "unknown_flags": [...], "unknown_args": [...],
     "abbreviated_flags": [...], "message": argparse's error or null}

- unknown flags: option names the parser does not know (not even as a unique prefix);
- abbreviated flags: argparse accepts a unique prefix of an option (`--cuda-graph-max` for
  `--cuda-graph-max-bs`), so SGLang would read another option string than the recipe names; a recipe that
  parses only thanks to a prefix is reported here (its status stays `ok`: the caller decides);
- invalid: any other argparse error (a bad choice or type, a missing value, an ambiguous prefix).

The parser is built as `sglang.srt.server_args.prepare_server_args` builds it (a plain ArgumentParser plus
`ServerArgs.add_cli_args`, `--config FILE` merged by SGLang's ConfigArgumentMerger); `sglang serve`'s own
`--model-type` is taken out first as `sglang.cli.serve` does. `ServerArgs.__post_init__` is not run: it needs an
accelerator. On a machine without triton (the lane does not install its 1 GB wheel) SGLang's own triton stub
(`sglang/_triton_stub.py`, or `_platform_stubs.py` in newer releases, meant for macOS) is loaded by file path
before `import sglang`. A torchvision whose C extension does not match the CPU torch fails on its fake-kernel
registrations at import; those are skipped (parsing never runs a torchvision op).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import sys
import time
import types
from collections.abc import Iterable
from typing import Any

#: Launcher prefixes of an SGLang server argv (the interpreter name is matched loosely, see _launcher_len).
MODULE_LAUNCHERS = ("sglang.launch_server",)
CLI_LAUNCHER = ("sglang", "serve")


class ParseFailure(Exception):
    """argparse called `error()`/`exit()`; carries the message and the arguments it did not recognise."""

    def __init__(self, message: str, extras: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.extras = list(extras)


class StrictParser(argparse.ArgumentParser):
    """An ArgumentParser that raises ParseFailure instead of printing usage and exiting."""

    _probe_extras: list[str]

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        self._probe_extras = []
        parsed, extras = super().parse_known_args(args, namespace)
        self._probe_extras = list(extras)
        return parsed, extras

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ParseFailure(message, getattr(self, "_probe_extras", []))

    def exit(self, status: int = 0, message: str | None = None) -> Any:  # type: ignore[override]
        raise ParseFailure((message or "").strip() or f"the parser exited with status {status}")


# --- making `import sglang.srt.server_args` work on a CPU box ------------------------------------------------


def _load_by_path(name: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def install_stubs() -> list[str]:
    """Stub what SGLang imports at module level but this lane does not install; returns what was stubbed."""
    done: list[str] = []
    if importlib.util.find_spec("triton") is None:
        spec = importlib.util.find_spec("sglang")  # finds the package without executing its __init__
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("sglang is not installed in this interpreter")
        pkg = next(iter(spec.submodule_search_locations))
        for fname in ("_platform_stubs.py", "_triton_stub.py"):
            path = os.path.join(pkg, fname)
            if not os.path.exists(path):
                continue
            stub = _load_by_path(f"_sglang_probe_{fname[:-3].lstrip('_')}", path)
            install = next((getattr(stub, n) for n in ("install_triton_stub", "install_triton", "install")
                            if callable(getattr(stub, n, None))), None)
            if install is None:
                continue
            install()
            if "triton" in sys.modules:
                done.append(f"triton (sglang/{fname})")
                break
        else:
            raise ImportError(f"no triton and no usable SGLang triton stub in {pkg}")
    if importlib.util.find_spec("torchvision") is not None and "torchvision._meta_registrations" not in sys.modules:
        # A CUDA-built torchvision beside the CPU torch: its C ops do not load, and `register_fake("torchvision::nms")`
        # in this module then raises at `import torchvision`. Fake kernels are irrelevant to argument parsing.
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        done.append("torchvision._meta_registrations (skipped)")
    return done


def build_parser() -> tuple[StrictParser, str]:
    from sglang.srt.server_args import ServerArgs

    parser = StrictParser(prog="sglang serve")
    ServerArgs.add_cli_args(parser)
    return parser, "sglang.srt.server_args.ServerArgs.add_cli_args"


def sglang_version() -> str:
    try:
        from importlib.metadata import version

        return version("sglang")
    except Exception:  # an unpackaged checkout
        import sglang

        return str(getattr(sglang, "__version__", "unknown"))


# --- checking one argv -----------------------------------------------------------------------------------------


def _launcher_len(argv: list[str]) -> int:
    """How many leading tokens are the launcher (0 when the argv is not an SGLang server launch)."""
    if tuple(argv[:2]) == CLI_LAUNCHER:
        return 2
    if len(argv) >= 3 and os.path.basename(argv[0]).startswith("python") and argv[1] == "-m" \
            and argv[2] in MODULE_LAUNCHERS:
        return 3
    return 0


def _is_flag(arg: str) -> bool:
    if not arg.startswith("-") or len(arg) == 1:
        return False
    try:
        float(arg)
    except ValueError:
        return True
    return False  # a negative number is a value


def _option_names(parser: argparse.ArgumentParser, args: list[str]) -> tuple[list[str], list[str]]:
    """(abbreviated, unknown) option names of `args` (SGLang's parser does not fold `_` into `-`)."""
    known = set(parser._option_string_actions)
    abbreviated, unknown = set(), set()
    for arg in args:
        if not _is_flag(arg) or arg == "--":
            continue
        name = arg.split("=", 1)[0] if arg.startswith("--") else arg
        if name in known:
            continue
        if name.startswith("--") and parser.allow_abbrev and sum(k.startswith(name) for k in known if k.startswith("--")) == 1:
            abbreviated.add(name)
        elif name.startswith("--") or not any(name.startswith(k) for k in known if not k.startswith("--")):
            unknown.add(name)
    return sorted(abbreviated), sorted(unknown)


def _preprocess(args: list[str], parser: argparse.ArgumentParser, cli: bool) -> list[str]:
    """What SGLang does to argv before parse_args: `sglang serve`'s --model-type, then `--config FILE`."""
    if cli:
        try:
            from sglang.cli.serve import _extract_model_type_override
        except ImportError:
            pass
        else:
            _, args = _extract_model_type_override(args)
    if "--config" in args:
        from sglang.srt.server_args_config_parser import ConfigArgumentMerger

        args = ConfigArgumentMerger(parser).merge_config_with_args(args)
    return list(args)


def check_argv(argv: list[str], parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Parse one launch argv; never raises for a bad argv."""
    k = _launcher_len(argv)
    result: dict[str, Any] = {"status": "ok", "launcher": argv[:k], "unknown_flags": [], "unknown_args": [],
                              "abbreviated_flags": [], "message": None}
    if k == 0:
        result.update(status="not-sglang",
                      message=f"argv starts neither 'python3 -m sglang.launch_server' nor 'sglang serve': {argv[:3]}")
        return result
    args = argv[k:]
    abbreviated, unknown = _option_names(parser, args)
    result["abbreviated_flags"] = abbreviated
    try:
        args = _preprocess(args, parser, cli=k == 2)
        parser.parse_args(args)
    except ParseFailure as exc:
        flags = [t for t in exc.extras if _is_flag(t)]
        if exc.message.startswith("unrecognized arguments") and exc.extras:
            result.update(status="unknown-flags" if flags else "invalid", unknown_args=exc.extras,
                          unknown_flags=sorted({t.split("=", 1)[0] for t in flags} | set(unknown)),
                          message=exc.message)
        else:
            result.update(status="unknown-flags" if unknown else "invalid", unknown_flags=unknown, message=exc.message)
    except Exception as exc:  # SGLang's pre-processing (a bad --config file, a bad --model-type)
        result.update(status="invalid", message=f"{type(exc).__name__}: {exc}")
    return result


def run(argvs: list[list[str]]) -> dict[str, Any]:
    started = time.monotonic()
    # Library chatter (warnings printed at import) must not corrupt the JSON on stdout.
    with contextlib.redirect_stdout(sys.stderr):
        stubs = install_stubs()
        parser, where = build_parser()
        imported = time.monotonic()
        results = [check_argv([str(a) for a in argv], parser) for argv in argvs]
    return {"sglang_version": sglang_version(), "python": platform.python_version(), "parser": where,
            "option_strings": len(parser._option_string_actions), "stubs": stubs,
            "seconds": {"import": round(imported - started, 3), "parse": round(time.monotonic() - imported, 3)},
            "results": results}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        sys.stderr.write("usage: python -I sglang_argparse_probe.py < ARGVS.json  (a JSON list of argv lists)\n")
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    # Without -I the script's folder (holding recipes/sglang.py) would shadow the sglang package.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    request = json.load(sys.stdin)
    if not isinstance(request, list) or not all(isinstance(a, list) for a in request):
        sys.stderr.write("sglang_argparse_probe: stdin must be a JSON list of argv lists\n")
        return 2
    json.dump(run(request), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
