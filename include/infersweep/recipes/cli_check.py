"""Check serve recipes against an installed vLLM's own `vllm serve` argument parser, starting nothing.

The recipes are the ones the planner makes (`expand_jobs` → `group_jobs` → `build_recipe`, with the served
model name the DAG passes). vLLM lives in its own venv, so the parsing happens in a subprocess: its
interpreter runs `vllm_argparse_probe.py` (stdlib + vLLM only) on a JSON request and answers in JSON.
Each image runs its own vLLM, so a flag the installed version lacks is reported per image, together with
the version that was used: it may be a flag the image's (older or newer) vLLM has.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infersweep.config.quirks import ModelQuirks, resolve_quirks
from infersweep.config.sweep import Sweep
from infersweep.faults.errors import InfersweepError
from infersweep.plan.models import ServeGroup

PROBE_SCRIPT = Path(__file__).with_name("vllm_argparse_probe.py")
#: Where `make test-real-engine` installs vLLM, relative to the repository root.
DEFAULT_VLLM_VENV = Path(".venv-vllm")
VLLM_PYTHON_ENV = "INFERSWEEP_VLLM_PYTHON"
DEFAULT_TIMEOUT_S = 300.0
_TAIL_CHARS = 2000

Status = Literal["ok", "unknown-flags", "invalid", "not-serve"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecipeToCheck(_Strict):
    """One planned recipe: where it comes from and the argv its server would be started with."""

    source: str
    config_key: str
    group: str = Field(description="serve group name (config key, shape, layout)")
    group_id: str
    image: str
    argv: tuple[str, ...]


class NotBuilt(_Strict):
    """A vLLM serve group the recipe builder refused (e.g. speculative decoding without its quirk)."""

    source: str
    config_key: str
    group: str
    image: str
    reason: str
    short_reason: str


class ParseResult(_Strict):
    """The probe's verdict on one argv."""

    status: Status
    unknown_flags: tuple[str, ...] = ()
    unknown_args: tuple[str, ...] = ()
    message: str | None = None
    deprecated_flags: tuple[str, ...] = ()
    abbreviated_flags: tuple[str, ...] = ()


class _ProbeItem(ParseResult):
    id: str


class ProbeResponse(_Strict):
    """The probe protocol's answer (see vllm_argparse_probe.py)."""

    vllm_version: str
    python: str
    parser: str
    results: tuple[_ProbeItem, ...]


class CheckedRecipe(_Strict):
    recipe: RecipeToCheck
    result: ParseResult


class ImageSummary(_Strict):
    """Per image of one source: counts, and which flags / values / builds failed how often."""

    image: str
    recipes: int
    ok: int
    unknown: int
    invalid: int
    not_built: int
    unknown_flags: dict[str, int] = Field(default_factory=dict)
    invalid_messages: dict[str, int] = Field(default_factory=dict)
    not_built_reasons: dict[str, int] = Field(default_factory=dict)
    deprecated_flags: dict[str, int] = Field(default_factory=dict)
    abbreviated_flags: dict[str, int] = Field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.recipes - self.ok + self.not_built


class Collected(_Strict):
    """The recipes of one source (a set of sweep/master files), and what had no vLLM recipe."""

    name: str
    paths: tuple[str, ...]
    blocking: bool = Field(description="failures here make `validate-cli` exit non-zero")
    recipes: tuple[RecipeToCheck, ...] = ()
    not_built: tuple[NotBuilt, ...] = ()
    other_frameworks: dict[str, int] = Field(default_factory=dict, description="serve groups per framework")


class SourceReport(_Strict):
    name: str
    paths: tuple[str, ...]
    blocking: bool
    images: tuple[ImageSummary, ...]
    recipes: tuple[CheckedRecipe, ...]
    not_built: tuple[NotBuilt, ...]
    other_frameworks: dict[str, int]

    @property
    def failed(self) -> int:
        return sum(i.failed for i in self.images)


class CliCheckReport(_Strict):
    """Everything `infersweep recipe validate-cli` found; `--json` writes it."""

    vllm_version: str
    vllm_python: str
    python: str
    parser: str
    sources: tuple[SourceReport, ...]

    @property
    def blocking_failures(self) -> int:
        return sum(s.failed for s in self.sources if s.blocking)


class ProbeError(InfersweepError, RuntimeError):
    """The vLLM interpreter could not run the probe (missing, crashed, timed out, bad answer)."""


# --- collecting ----------------------------------------------------------------------------------------


def load_quirks_file(path: Path) -> dict[str, ModelQuirks]:
    """A quirks table (configs/quirks.yaml format); ValueError naming the file and model on bad input."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the quirks file: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a quirks file maps model-prefix or HF model id to quirks")
    table: dict[str, ModelQuirks] = {}
    for name, raw in data.items():
        try:
            table[str(name)] = ModelQuirks.model_validate(raw or {})
        except ValidationError as exc:
            raise ValueError(f"{path}: quirks for {name!r} are invalid: {exc}") from exc
    return table


def _short_reason(group: ServeGroup, exc: Exception) -> str:
    from infersweep.recipes.errors import MissingQuirkError

    if isinstance(exc, MissingQuirkError):
        return f"no spec-decoding quirk {group.spec_decoding!r} for {group.model_prefix}"
    if group.disagg:
        return "disaggregated prefill/decode (no single-server recipe)"
    return f"{type(exc).__name__}: {str(exc).split('): ', 1)[-1]}"[:160]


def collect_recipes(
    sweep: Sweep, *, name: str, paths: Sequence[str], blocking: bool,
    fallback_quirks: dict[str, ModelQuirks] | None = None,
) -> Collected:
    """Every vLLM serve recipe the planner makes for `sweep`, as the DAG builds it (served name = model).

    `fallback_quirks` supplies quirks for models the sweep has none for (master files carry no quirks).
    Groups of other frameworks are only counted.
    """
    from infersweep.plan.groups import group_jobs
    from infersweep.plan.planner import expand_jobs
    from infersweep.recipes.errors import RecipeError
    from infersweep.recipes.vllm import build_recipe

    recipes: list[RecipeToCheck] = []
    not_built: list[NotBuilt] = []
    others: Counter[str] = Counter()
    for group in group_jobs(expand_jobs(sweep)):
        if group.framework != "vllm":
            others[group.framework] += 1
            continue
        quirks = sweep.quirks_for(group.model_prefix, group.model)
        if quirks is None and fallback_quirks:
            quirks = resolve_quirks(fallback_quirks, model_prefix=group.model_prefix, model=group.model)
        try:
            recipe = build_recipe(group, quirks, served_model_name=group.model)
        except RecipeError as exc:
            not_built.append(NotBuilt(source=name, config_key=group.config_key, group=group.name, image=group.image,
                                      reason=str(exc), short_reason=_short_reason(group, exc)))
            continue
        recipes.append(RecipeToCheck(source=name, config_key=group.config_key, group=group.name,
                                     group_id=group.id, image=recipe.image, argv=recipe.argv))
    return Collected(name=name, paths=tuple(paths), blocking=blocking, recipes=tuple(recipes),
                     not_built=tuple(not_built), other_frameworks=dict(sorted(others.items())))


# --- probing ---------------------------------------------------------------------------------------------


def default_vllm_python() -> Path:
    """`$INFERSWEEP_VLLM_PYTHON`, else `.venv-vllm/bin/python` under the current directory."""
    return Path(os.environ.get(VLLM_PYTHON_ENV) or DEFAULT_VLLM_VENV / "bin" / "python")


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _TAIL_CHARS else "…" + text[-_TAIL_CHARS:]


def run_probe(argvs: Sequence[Sequence[str]], *, vllm_python: Path, timeout_s: float = DEFAULT_TIMEOUT_S) -> ProbeResponse:
    """Parse each argv with the `vllm serve` parser of the vLLM that `vllm_python` imports.

    The probe runs in its own session, is killed with its process group after `timeout_s`, and must answer
    with one result per argv, in order. Raises ProbeError otherwise.
    """
    # absolute(), not resolve(): the venv's python is a symlink, and following it would leave the venv.
    vllm_python = vllm_python.absolute()
    if not vllm_python.exists():
        raise ProbeError(f"no vLLM interpreter at {vllm_python}: install vLLM (make test-real-engine) or pass "
                         f"--vllm-python / set {VLLM_PYTHON_ENV}")
    with tempfile.TemporaryDirectory(prefix="infersweep-cli-check-") as tmp:
        request, response = Path(tmp) / "request.json", Path(tmp) / "response.json"
        ids = [f"r{i}" for i in range(len(argvs))]
        request.write_text(json.dumps({"recipes": [{"id": i, "argv": list(a)} for i, a in zip(ids, argvs, strict=True)]}))
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
        # -I: the probe's folder holds recipes/vllm.py, which must not shadow the vllm package.
        cmd = [str(vllm_python), "-I", str(PROBE_SCRIPT), str(request), str(response)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=tmp, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # The probe only parses, but a vLLM import may start helpers: end the whole session.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ProbeError(f"the vLLM argument probe ({vllm_python}) did not finish within {timeout_s:.0f} s") from None
        if proc.returncode != 0 or not response.exists():
            raise ProbeError(f"the vLLM argument probe failed (exit {proc.returncode}) with {vllm_python}:\n"
                             f"{_tail(err or out)}")
        try:
            answer = ProbeResponse.model_validate_json(response.read_text())
        except ValidationError as exc:
            raise ProbeError(f"the vLLM argument probe answered outside its protocol: {exc}") from exc
    if [r.id for r in answer.results] != ids:
        raise ProbeError(f"the vLLM argument probe answered {len(answer.results)} results for {len(ids)} argvs")
    return answer


# --- reporting ---------------------------------------------------------------------------------------------


def _count(items: Iterable[str]) -> dict[str, int]:
    return dict(Counter(items).most_common())


def _one_line(message: str, limit: int = 200) -> str:
    """A summary key for an error message: pydantic's multi-line errors on one line, capped."""
    text = " | ".join(part.strip() for part in message.splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize_images(checked: Sequence[CheckedRecipe], not_built: Sequence[NotBuilt]) -> tuple[ImageSummary, ...]:
    """One summary per image, images in first-seen order."""
    images = list(dict.fromkeys([c.recipe.image for c in checked] + [n.image for n in not_built]))
    out = []
    for image in images:
        mine = [c.result for c in checked if c.recipe.image == image]
        refused = [n for n in not_built if n.image == image]
        out.append(ImageSummary(
            image=image,
            recipes=len(mine),
            ok=sum(r.status == "ok" for r in mine),
            unknown=sum(r.status == "unknown-flags" for r in mine),
            invalid=sum(r.status in ("invalid", "not-serve") for r in mine),
            not_built=len(refused),
            unknown_flags=_count(f for r in mine for f in r.unknown_flags),
            invalid_messages=_count(_one_line(r.message or "") for r in mine if r.status in ("invalid", "not-serve")),
            not_built_reasons=_count(n.short_reason for n in refused),
            deprecated_flags=_count(f for r in mine for f in r.deprecated_flags),
            abbreviated_flags=_count(f for r in mine for f in r.abbreviated_flags),
        ))
    return tuple(out)


def check_sources(
    sources: Sequence[Collected], *, vllm_python: Path, timeout_s: float = DEFAULT_TIMEOUT_S,
) -> CliCheckReport:
    """Parse every recipe of `sources` in one probe run (identical argvs once) and summarise per image."""
    unique = list(dict.fromkeys(r.argv for s in sources for r in s.recipes))
    answer = run_probe(unique, vllm_python=vllm_python, timeout_s=timeout_s)
    by_argv = {argv: ParseResult.model_validate(item.model_dump(exclude={"id"}))
               for argv, item in zip(unique, answer.results, strict=True)}
    reports = []
    for s in sources:
        checked = tuple(CheckedRecipe(recipe=r, result=by_argv[r.argv]) for r in s.recipes)
        reports.append(SourceReport(name=s.name, paths=s.paths, blocking=s.blocking,
                                    images=summarize_images(checked, s.not_built), recipes=checked,
                                    not_built=s.not_built, other_frameworks=s.other_frameworks))
    return CliCheckReport(vllm_version=answer.vllm_version, vllm_python=str(vllm_python.absolute()), python=answer.python,
                          parser=answer.parser, sources=tuple(reports))


def _counts_line(label: str, counts: dict[str, int]) -> str | None:
    if not counts:
        return None
    return f"    {label}: " + ", ".join(f"{k} ×{n}" for k, n in counts.items())


def format_report(report: CliCheckReport) -> str:
    """The plain-text summary: one table per source, one row per image, then what failed and how often."""
    lines = [
        f"vllm serve parser: vLLM {report.vllm_version} (Python {report.python}, {report.vllm_python}), "
        f"built by {report.parser}",
        f"Each image runs its own vLLM: 'unknown' flags are flags vLLM {report.vllm_version} lacks.",
    ]
    width = max([len(i.image) for s in report.sources for i in s.images] + [5])
    for s in report.sources:
        ok = sum(i.ok for i in s.images)
        total = sum(i.recipes for i in s.images)
        refused = sum(i.not_built for i in s.images)
        kind = "must parse" if s.blocking else "informational"
        lines += ["", f"{s.name} ({kind}; {', '.join(s.paths)}): {total} recipes checked, {ok} ok"
                  + (f", {refused} not built" if refused else "")]
        if not s.images:
            lines.append("  (no vLLM serve groups)")
        else:
            lines.append(f"  {'image':<{width}}  recipes     ok  unknown  invalid  not-built")
        for i in s.images:
            lines.append(f"  {i.image:<{width}}  {i.recipes:>7}  {i.ok:>5}  {i.unknown:>7}  {i.invalid:>7}  {i.not_built:>9}")
            for label, counts in (("unknown flags", i.unknown_flags), ("invalid", i.invalid_messages),
                                  ("not built", i.not_built_reasons), ("deprecated flags", i.deprecated_flags),
                                  ("abbreviated flags", i.abbreviated_flags)):
                line = _counts_line(label, counts)
                if line:
                    lines.append(line)
        if s.other_frameworks:
            lines.append("  other frameworks (no vLLM recipe, not checked): "
                         + ", ".join(f"{fw} {n} groups" for fw, n in s.other_frameworks.items()))
    return "\n".join(lines) + "\n"
