"""Our sweep file, and `load_sweep()`: the one entry point that turns config paths into a validated `Sweep`.

A sweep file is a YAML mapping whose `sweep:` key names it (that key is how it is told apart from an
InferenceX master file). Everything else is optional:

    sweep: minimaxm3-hopper
    engine: vllm-docker                 # sim | vllm-docker | vllm-process (default vllm-docker)
    schedule: "0 2 * * *"               # cron, preset, or null for manual runs only
    image-tag-pattern: "vllm/vllm-openai:nightly-{{ ds_nodash }}"   # backfills: logical date → image
    image-history: {2026-06-12: vllm/vllm-openai:minimax-m3}
    runners: ../runners.yaml            # runner labels to validate against (else runners.yaml beside a master)
    masters:                            # InferenceX master files, key selection by glob
      - {path: nvidia-master.yaml, config-keys: ["minimaxm3-*"]}
    entries: {<config-key>: <InferenceX entry>}      # inline entries, same schema as a master file
    inventory: {<runner label>: [{name, docker-url, gpus, gpu-memory-gb, hf-home, cache-domain}]}
    inventory-files: [inventory.yaml]   # each: {<runner label>: [nodes]}
    quirks: {<model-prefix or HF id>: <ModelQuirks>}
    quirks-files: [quirks.yaml]         # each: {<model-prefix or HF id>: <ModelQuirks>}; inline wins
    eval: {enabled, task: gsm8k, limit, num-fewshot, default-threshold, thresholds | thresholds-file}
    bench: {random-range-ratio: 0.8, prompts-per-conc: 10, warmups-per-conc: 2}
    notify: {on: [failure, regression], smtp: {conn-id: infersweep_smtp, to: [a@example.com]},
             webhook: {conn-id: infersweep_webhook}}    # alerts, off by default; secrets in the connections
    adaptive: {mode: off | frontier | slo, tolerance: 0.01, max-points, concurrencies: ladder | range,
               slo: {p99-ttft-ms: 2000, median-tpot-ms: 50}}   # which points to measure; off = the full ladder
    repeats: 3 | {default: 1, rules: [{tp: 8, conc: 64, n: 5}]}  # measure points n times, with intervals

Relative paths are relative to the sweep file. `load_sweep` also accepts master files directly and
folders (every sweep file in them). All problems in all files are reported together as one ConfigError.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError, field_validator

from infersweep.config.adaptive import AdaptiveSettings, RepeatSettings
from infersweep.config.errors import ConfigIssue, IssueCollector, PathPart, format_path
from infersweep.config.inventory import COST_KEY, Node, label_cost_problem
from infersweep.config.master import FieldProblem, MasterEntry, entry_problems
from infersweep.config.quirks import ModelQuirks
from infersweep.config.runners import NodeFitError, RunnerHardware, Runners, load_runners
from infersweep.config.schema_errors import add_validation_issues, redacted_values, validate_yaml
from infersweep.config.settings import (
    DEFAULT_ENGINE,
    DEFAULT_SCHEDULE,
    BenchSettings,
    Engine,
    EvalSettings,
    EvalThresholds,
    NotifySettings,
    SimSettings,
    check_image_history,
    check_image_pattern,
    check_schedule,
    render_image,
)
from infersweep.config.yamlio import YamlDoc, read_yaml

SWEEP_MARKER = "sweep"
#: Folders (colon-separated) besides a sweep file's own that its referenced files may live in.
CONFIG_ROOTS_ENV = "INFERSWEEP_CONFIG_ROOTS"
_MASTER_HINT_KEYS = {"image", "model", "scenarios", "multinode", "runner"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MasterRef(_Strict):
    """A master file to take entries from, and which config keys (globs) to take."""

    path: StrictStr
    config_keys: tuple[StrictStr, ...] = Field(default=("*",), alias="config-keys", min_length=1)


class SweepFile(_Strict):
    """The sweep-file schema. `entries`, `inventory` and `quirks` are validated item by item afterwards,
    so their errors carry the config key / label / model they belong to."""

    sweep: StrictStr = Field(min_length=1, max_length=200, description="sweep name")
    description: StrictStr | None = None
    engine: Engine = DEFAULT_ENGINE
    schedule: StrictStr | None = DEFAULT_SCHEDULE
    image_tag_pattern: StrictStr | None = Field(default=None, alias="image-tag-pattern")
    image_history: dict[date, StrictStr] = Field(default_factory=dict, alias="image-history")
    runners: StrictStr | None = None
    masters: tuple[MasterRef | StrictStr, ...] = ()
    entries: dict[StrictStr, Any] = Field(default_factory=dict)
    inventory: dict[StrictStr, Any] = Field(default_factory=dict)
    inventory_files: tuple[StrictStr, ...] = Field(default=(), alias="inventory-files")
    quirks: dict[StrictStr, Any] = Field(default_factory=dict)
    quirks_files: tuple[StrictStr, ...] = Field(default=(), alias="quirks-files")
    eval: EvalSettings = Field(default_factory=EvalSettings)
    bench: BenchSettings = Field(default_factory=BenchSettings)
    sim: SimSettings = Field(default_factory=SimSettings)
    notify: NotifySettings | None = None
    adaptive: AdaptiveSettings = Field(default_factory=AdaptiveSettings)
    repeats: RepeatSettings = Field(default_factory=RepeatSettings)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        return check_schedule(v)

    @field_validator("image_tag_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        return check_image_pattern(v) if v is not None else None

    @field_validator("image_history")
    @classmethod
    def _history(cls, v: dict[date, str]) -> dict[date, str]:
        return check_image_history(v)


@dataclass(frozen=True)
class SweepSettings:
    """The settings of one sweep file (defaults for master files loaded directly)."""

    name: str
    engine: Engine = DEFAULT_ENGINE
    schedule: str | None = DEFAULT_SCHEDULE
    image_tag_pattern: str | None = None
    image_history: dict[date, str] = field(default_factory=dict)
    eval: EvalSettings = field(default_factory=EvalSettings)
    bench: BenchSettings = field(default_factory=BenchSettings)
    sim: SimSettings = field(default_factory=SimSettings)
    notify: NotifySettings | None = None
    adaptive: AdaptiveSettings = field(default_factory=AdaptiveSettings)
    repeats: RepeatSettings = field(default_factory=RepeatSettings)
    file: str | None = None

    def image_for(self, day: date) -> str | None:
        """The image to serve for a logical date: the recorded one, else the pattern, else None (= config's)."""
        if day in self.image_history:
            return self.image_history[day]
        return render_image(self.image_tag_pattern, day) if self.image_tag_pattern else None


@dataclass
class Sweep:
    """Everything a sweep needs, validated: entries by config key, inventory, quirks and settings.

    With several sweep files loaded, each config key keeps the settings of the file that brought it in
    (`settings_for(key)`); `default` holds those of the first sweep file (defaults for master files only).
    """

    default: SweepSettings = field(default_factory=lambda: SweepSettings(name="sweep"))
    entries: dict[str, MasterEntry] = field(default_factory=dict)
    sources: dict[str, tuple[str, int]] = field(default_factory=dict)
    inventory: dict[str, list[Node]] = field(default_factory=dict)
    quirks: dict[str, ModelQuirks] = field(default_factory=dict)
    runners: Runners | None = None
    files: tuple[str, ...] = ()
    warnings: list[ConfigIssue] = field(default_factory=list)
    settings: dict[str, SweepSettings] = field(default_factory=dict)

    def settings_for(self, config_key: str) -> SweepSettings:
        """Settings of the sweep file `config_key` came from (`default` for keys from master files)."""
        return self.settings.get(config_key) or self.default

    def eval_for(self, config_key: str) -> EvalSettings:
        """Eval settings that apply to `config_key`."""
        return self.settings_for(config_key).eval

    def quirks_for(self, model_prefix: str, model: str) -> ModelQuirks | None:
        """Quirks for a model: an entry keyed by the HF model id wins over one keyed by model-prefix."""
        return self.quirks.get(model) or self.quirks.get(model_prefix)

    def source_of(self, config_key: str) -> tuple[str, int]:
        """(file, line) where `config_key` is defined."""
        return self.sources[config_key]

    def nodes_for(self, runner: str) -> list[Node]:
        """Inventory nodes for a runner label (empty when the sweep has none)."""
        return list(self.inventory.get(runner, []))

    def image_for(self, day: date, config_key: str | None = None) -> str | None:
        """The image for a logical date (of `config_key`'s sweep file): recorded, else the pattern, else None."""
        settings = self.settings_for(config_key) if config_key is not None else self.default
        return settings.image_for(day)

    def runner_labels(self) -> set[str]:
        """Labels entries may use: runners.yaml labels plus inventory labels."""
        return set(self.runners.labels if self.runners else ()) | set(self.inventory)


def load_sweep(paths: Sequence[str | Path], *, runners: Path | str | None = None) -> Sweep:
    """Load sweep files, folders of sweep files and/or InferenceX master files into one validated Sweep.

    With several sweep files, entries, inventory and quirks are merged (a config key defined twice is an
    error); scalar settings (engine, schedule, eval, bench, image pattern) come from the first file that
    sets them. Raises ConfigError listing every problem found.
    """
    loader = _SweepLoader(Path(runners) if runners is not None else None)
    for path in paths:
        loader.add_path(Path(path))
    return loader.finish()


def discover(paths: Sequence[str | Path]) -> list[Path]:
    """Expand folders to the sweep files in them (sorted); files are kept as given.

    A folder's candidates are its files named *.yaml / *.yml in any case (`Nightly.YAML`), not hidden ones
    (an editor's lock file such as emacs' `.#x.yaml` is a dangling symlink) and not sub-folders. A candidate
    whose kind cannot be told (a dangling symlink or a symlink loop, unreadable, a FIFO, over the size limit,
    not UTF-8) is kept too: loading it reports why, where skipping it would hide a sweep file in silence."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out.extend(p for p in _folder_yaml_files(path) if _is_sweep_file(p))
        else:
            out.append(path)
    return out


def _folder_yaml_files(folder: Path) -> list[Path]:
    """`folder`'s *.yaml / *.yml entries (the parse cache's suffix rule), sorted, less hidden names and folders."""
    from infersweep.config.yamlio import is_yaml_name

    try:
        names = sorted(p for p in folder.iterdir() if is_yaml_name(p.name) and not p.name.startswith("."))
    except OSError:  # an unlistable folder offers no sweep files; loading it says "folder has no sweep files"
        return []
    out = []
    for p in names:
        try:
            if p.is_dir():  # a folder named x.yaml (or a link to one): folders are not searched recursively
                continue
        except OSError:
            pass  # not stat-able (permission): reading it reports why
        out.append(p)
    return out


def _is_sweep_file(path: Path) -> bool:
    """A cheap textual test, without parsing 12k-line master files twice: a `sweep:` key at the start of a
    line (top level), also quoted ('sweep':, "sweep":) or after a UTF-8 byte-order mark. A file that cannot
    be read as UTF-8 text counts as one, so that loading it reports the problem (see `discover`)."""
    import re

    from infersweep.config.yamlio import read_config_bytes

    raw = read_config_bytes(path, str(path), IssueCollector())
    if raw is None:
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    # The literal comes first so `re` finds candidates by a fast substring search (a master file: 0.5 ms in all);
    # what precedes each one (line start, BOM, opening quote) is checked here.
    for m in re.finditer(re.escape(SWEEP_MARKER).encode() + rb"(['\"]?)[ \t]*:(?:\s|\Z)", raw):
        begin, quote = m.start(), m.group(1)
        if quote:
            if raw[begin - 1:begin] != quote:
                continue
            begin -= 1
        if begin == 0 or raw[begin - 1:begin] in (b"\n", b"\r") or raw[:begin] == b"\xef\xbb\xbf":
            return True
    return False


class _SweepLoader:
    def __init__(self, runners: Path | None) -> None:
        self.issues = IssueCollector()
        self.sweep = Sweep()  # settings set in finish(); filled in place while reading
        self.primary: SweepSettings | None = None
        self.current: SweepSettings | None = None  # settings of the sweep file being read; None for masters
        self.entry_lines: dict[str, tuple[YamlDoc, tuple[PathPart, ...]]] = {}
        self.from_master: set[str] = set()
        self.runner_files: list[Runners] = []
        self.loaded_runner_paths: set[Path] = set()
        self.loaded_quirk_files: dict[Path, dict[str, ModelQuirks]] = {}
        self.quirk_origin: dict[str, str] = {}
        self.files: list[str] = []
        self.seen_paths: set[Path] = set()
        self.loaded_inventory_files: set[Path] = set()
        self.explicit_runners = runners is not None
        if runners is not None:
            self._load_runners(runners)

    # -- sources --------------------------------------------------------------------------------------
    def add_path(self, path: Path) -> None:
        if path.is_dir():
            found = discover([path])
            if not found:
                self.issues.add(str(path), None, "folder has no sweep files",
                                allowed=f"*.yaml files with a top-level '{SWEEP_MARKER}:' key, or pass master files directly")
            for p in found:
                self.add_path(p)
            return
        resolved = safe_resolve(path)
        if resolved in self.seen_paths:  # the same file named twice (or via a folder) loads once
            return
        self.seen_paths.add(resolved)
        doc = read_yaml(path, self.issues)
        if doc is None:
            return
        data = doc.data
        if data is None:
            self.issues.add(doc.file, 1, "file is empty",
                            allowed=f"a sweep file (starting '{SWEEP_MARKER}: <name>') or an InferenceX master file")
        elif isinstance(data, dict) and SWEEP_MARKER in data:
            self._add_sweep_file(path, doc)
        elif _looks_like_master(data):
            self.current = None
            self._add_master(path, doc, ("*",), None)
            beside = path.parent / "runners.yaml"
            if not self.explicit_runners and beside.is_file():
                self._load_runners(beside)
        else:
            self.issues.add(doc.file, doc.line_of(()), "neither a sweep file nor an InferenceX master file",
                            allowed=f"a mapping with a top-level '{SWEEP_MARKER}: <name>' key, or config-key → entry")

    def _add_sweep_file(self, path: Path, doc: YamlDoc) -> None:
        self.files.append(doc.file)
        try:
            spec = validate_yaml(SweepFile, doc.data)
        except ValidationError as exc:
            add_validation_issues(self.issues, exc, doc=doc, base=(), config_key=None, model=SweepFile)
            self.current = None
            # Still check the inline entries and inventory, so one run reports every problem in the file.
            data = doc.data
            if isinstance(data.get("entries"), dict):
                for key, raw in data["entries"].items():
                    self._add_entry(str(key), raw, doc, ("entries", key))
            if isinstance(data.get("inventory"), dict):
                self._add_inventory(data["inventory"], doc, ("inventory",))
            return
        here = path.parent
        self.current = self._file_settings(spec, here, doc)
        if self.primary is None:
            self.primary = self.current
        if spec.runners is not None and not self.explicit_runners:
            runners_path = self._reference(here, spec.runners, doc, ("runners",))
            if runners_path is not None:
                self._load_runners(runners_path, doc=doc, at=("runners",))
        for i, ref in enumerate(spec.masters):
            ref = MasterRef(path=ref) if isinstance(ref, str) else ref
            master_path = self._reference(here, ref.path, doc, ("masters", i))
            if master_path is None:
                continue
            mdoc = read_yaml(master_path, self.issues, display=_display(master_path))
            if mdoc is None:
                self._pin_last_issue(doc, ("masters", i))
                continue
            if not _looks_like_master(mdoc.data):
                self.issues.add(doc.file, doc.line_of(("masters", i)), f"{ref.path} is not an InferenceX master file",
                                field_path=f"masters[{i}]")
                continue
            self._add_master(master_path, mdoc, ref.config_keys, (doc, ("masters", i, "config-keys")))
            beside = master_path.parent / "runners.yaml"
            if not self.explicit_runners and spec.runners is None and beside.is_file():
                self._load_runners(beside)
        for key, raw in spec.entries.items():
            self._add_entry(str(key), raw, doc, ("entries", key))
        for i, rel in enumerate(spec.inventory_files):
            ipath = self._reference(here, rel, doc, ("inventory-files", i))
            if ipath is None or safe_resolve(ipath) in self.loaded_inventory_files:  # shared by several sweep files
                continue
            self.loaded_inventory_files.add(safe_resolve(ipath))
            idoc = read_yaml(ipath, self.issues, display=_display(ipath))
            if idoc is not None:
                with redacted_values():  # a referenced file: name its keys, never its values
                    self._add_inventory(idoc.data, idoc, ())
            else:
                self._pin_last_issue(doc, ("inventory-files", i))
        self._add_inventory(spec.inventory, doc, ("inventory",))
        self._add_quirks_files(spec, here, doc)

    def _add_master(self, path: Path, doc: YamlDoc, globs: Sequence[str],
                    selection: tuple[YamlDoc, tuple[PathPart, ...]] | None) -> None:
        self.files.append(doc.file)
        data: dict[Any, Any] = doc.data
        keys = [k for k in data if isinstance(k, str)]
        chosen: dict[str, None] = {}
        for j, pattern in enumerate(globs):
            matches = fnmatch.filter(keys, pattern) if any(c in pattern for c in "*?[") else (
                [pattern] if pattern in data else [])
            if not matches and selection is not None:
                sdoc, spath = selection
                self.issues.add(sdoc.file, sdoc.line_of((*spath, j)), f"'{pattern}' matches no config key in {doc.file}",
                                field_path=f"{spath[0]}[{spath[1]}].config-keys[{j}]",
                                allowed="an existing config key or a glob such as minimaxm3-*")
            chosen.update(dict.fromkeys(matches))
        for key in data:
            if not isinstance(key, str):
                self.issues.add(doc.file, doc.line_of((key,)), f"config key {key!r} must be a string")
            elif key in chosen:
                self._add_entry(key, data[key], doc, (key,))
                self.from_master.add(key)

    def _add_entry(self, key: str, raw: Any, doc: YamlDoc, base: tuple[PathPart, ...]) -> None:
        from infersweep.config.names import DAG_ID_ALLOWED, check_dag_id, quote

        line = doc.line_of(base) or 0
        # The key becomes the DAG id (and is matched by config-keys globs, so it cannot hold * or ? either).
        bad_key = check_dag_id(key)
        if bad_key:
            self.issues.add(doc.file, line, f"config key cannot be an Airflow DAG id: it {bad_key}",
                            config_key=quote(key), allowed=DAG_ID_ALLOWED)
            return
        if key in self.sweep.sources:
            prev_file, prev_line = self.sweep.sources[key]
            if (prev_file, prev_line) != (doc.file, line):
                self.issues.add(doc.file, line, f"config key defined twice (also at {prev_file}:{prev_line})",
                                config_key=key, allowed="unique config keys across all loaded files")
            return
        try:
            entry = validate_yaml(MasterEntry, raw)
        except ValidationError as exc:
            add_validation_issues(self.issues, exc, doc=doc, base=base, config_key=key, model=MasterEntry)
            return
        problems = entry_problems(entry)
        for path, message, allowed in problems:
            self.issues.add(doc.file, doc.line_of((*base, *path)), message, config_key=key, field_path=path,
                            allowed=allowed)
        if problems:
            return
        self.sweep.entries[key] = entry
        self.sweep.sources[key] = (doc.file, line)
        if self.current is not None:
            self.sweep.settings[key] = self.current
        self.entry_lines[key] = (doc, base)

    def _add_inventory(self, data: Any, doc: YamlDoc, base: tuple[PathPart, ...]) -> None:
        if not isinstance(data, dict):
            self.issues.add(doc.file, doc.line_of(base), "inventory must map runner label → list of nodes",
                            field_path=base, allowed="h200: [{name: node-1, docker-url: ssh://..., gpus: 8}]")
            return
        for label, nodes in data.items():
            path = (*base, label)
            if not isinstance(nodes, list):
                self.issues.add(doc.file, doc.line_of(path), f"runner label '{label}' must map to a list of nodes",
                                field_path=path)
                continue
            if not nodes:
                self.issues.add(doc.file, doc.line_of(path), f"runner label '{label}' has no nodes", field_path=path,
                                allowed=f"at least one node, e.g. {label}: [{{name: {label}-0, gpus: 8}}], or drop the label")
                continue
            names = {n.name for n in self.sweep.inventory.get(str(label), [])}
            for i, raw in enumerate(nodes):
                node_raw = dict(raw) if isinstance(raw, dict) else raw
                if isinstance(node_raw, dict):
                    given = node_raw.setdefault("runner", str(label))
                    if given != label:
                        self.issues.add(doc.file, doc.line_of((*path, i, "runner")),
                                        f"node lists runner '{given}' but sits under label '{label}'",
                                        field_path=(*path, i, "runner"), allowed=f"'{label}' or omit runner")
                        continue
                try:
                    node = validate_yaml(Node, node_raw)
                except ValidationError as exc:
                    add_validation_issues(self.issues, exc, doc=doc, base=(*path, i), config_key=None, model=Node,
                                          shown=(*path, i))
                    continue
                if node.name in names:
                    self.issues.add(doc.file, doc.line_of((*path, i)), f"node '{node.name}' listed twice under '{label}'",
                                    field_path=(*path, i), allowed="unique node names per runner label")
                    continue
                cost_problem = label_cost_problem(str(label), self.sweep.inventory.get(str(label), []), node)
                if cost_problem:
                    at = (*path, i, COST_KEY) if isinstance(node_raw, dict) and COST_KEY in node_raw else (*path, i)
                    self.issues.add(doc.file, doc.line_of(at), cost_problem[0], field_path=at, allowed=cost_problem[1])
                    continue
                names.add(node.name)
                self.sweep.inventory.setdefault(str(label), []).append(node)

    def _add_quirks_files(self, spec: SweepFile, here: Path, doc: YamlDoc) -> None:
        from_files: dict[str, ModelQuirks] = {}
        for i, rel in enumerate(spec.quirks_files):
            qref = self._reference(here, rel, doc, ("quirks-files", i))
            if qref is None:
                continue
            qpath = safe_resolve(qref)
            if qpath not in self.loaded_quirk_files:
                qdoc = read_yaml(qpath, self.issues, display=_display(here / rel))
                if qdoc is None:
                    self._pin_last_issue(doc, ("quirks-files", i))
                    continue
                with redacted_values():
                    self.loaded_quirk_files[qpath] = self._parse_quirks(qdoc.data, qdoc, ())
            for name, q in self.loaded_quirk_files[qpath].items():
                if name in from_files and from_files[name] != q:
                    self.issues.add(doc.file, doc.line_of(("quirks-files", i)),
                                    f"quirks for '{name}' differ between quirks files", field_path=f"quirks-files[{i}]",
                                    allowed="define each model's quirks in one file, or override inline under quirks:")
                from_files[name] = q
        merged = {**from_files, **self._parse_quirks(spec.quirks, doc, ("quirks",))}
        for name, q in merged.items():
            if name in self.sweep.quirks and self.sweep.quirks[name] != q:
                self.issues.add(doc.file, doc.line_of(("quirks",)),
                                f"quirks for '{name}' conflict with those loaded from {self.quirk_origin[name]}",
                                field_path="quirks", allowed="one definition per model across the loaded sweep files")
                continue
            self.sweep.quirks[name] = q
            self.quirk_origin.setdefault(name, doc.file)

    def _parse_quirks(self, data: Any, doc: YamlDoc, base: tuple[PathPart, ...]) -> dict[str, ModelQuirks]:
        if not isinstance(data, dict):
            self.issues.add(doc.file, doc.line_of(base), "quirks must map model-prefix or HF model id → quirks",
                            field_path=base)
            return {}
        out: dict[str, ModelQuirks] = {}
        for name, raw in data.items():
            try:
                out[str(name)] = validate_yaml(ModelQuirks, raw if raw is not None else {})
            except ValidationError as exc:
                add_validation_issues(self.issues, exc, doc=doc, base=(*base, name), config_key=str(name),
                                      model=ModelQuirks)
        return out

    def _file_settings(self, spec: SweepFile, here: Path, doc: YamlDoc) -> SweepSettings:
        settings = spec.eval
        if settings.thresholds_file is not None:
            if settings.thresholds is not None:
                self.issues.add(doc.file, doc.line_of(("eval", "thresholds-file")),
                                "give thresholds or thresholds-file, not both", field_path="eval.thresholds-file")
            tpath = self._reference(here, settings.thresholds_file, doc, ("eval", "thresholds-file"))
            table = self._read_thresholds(tpath, doc) if tpath is not None else None
            if table is not None:
                settings = settings.model_copy(update={"thresholds": table})
        if settings.data_dir is not None:
            # A dataset folder, not a config: it may live anywhere (a shared data mount), and nothing in it is
            # ever quoted in a message, so it is not confined like the files above.
            data_dir = (here / settings.data_dir).resolve()
            if not (data_dir / "test.jsonl").is_file():
                self.issues.add(doc.file, doc.line_of(("eval", "data-dir")),
                                f"{data_dir} has no test.jsonl; give a folder with GSM8K train.jsonl and "
                                "test.jsonl, or drop data-dir to download openai/gsm8k",
                                field_path="eval.data-dir")
            settings = settings.model_copy(update={"data_dir": str(data_dir)})
        return SweepSettings(name=spec.sweep, engine=spec.engine, schedule=spec.schedule,
                             image_tag_pattern=spec.image_tag_pattern, image_history=dict(spec.image_history),
                             eval=settings, bench=spec.bench, sim=spec.sim, notify=spec.notify,
                             adaptive=spec.adaptive, repeats=spec.repeats, file=doc.file)

    def _read_thresholds(self, path: Path, doc: YamlDoc) -> EvalThresholds | None:
        # eval-thresholds.json is JSON, which YAML reads as well; keeps line numbers for errors.
        tdoc = read_yaml(path, self.issues, display=_display(path))
        if tdoc is None:
            self._pin_last_issue(doc, ("eval", "thresholds-file"))
            return None
        try:
            return validate_yaml(EvalThresholds, tdoc.data)
        except ValidationError as exc:
            with redacted_values():
                add_validation_issues(self.issues, exc, doc=tdoc, base=(), config_key=None, model=EvalThresholds)
            return None

    def _load_runners(self, path: Path, *, doc: YamlDoc | None = None, at: tuple[PathPart, ...] = ()) -> None:
        resolved = safe_resolve(path)
        if resolved in self.loaded_runner_paths:
            return
        self.loaded_runner_paths.add(resolved)
        with redacted_values():
            runners = load_runners(path, self.issues, display=_display(path))
        if runners is None and doc is not None:
            self._pin_last_issue(doc, at)
        if runners is not None:
            self.runner_files.append(runners)

    def _reference(self, here: Path, rel: str, doc: YamlDoc, at: tuple[PathPart, ...]) -> Path | None:
        """A file or folder a sweep file points to, if it resolves inside the sweep file's folder or an allowed
        root (INFERSWEEP_CONFIG_ROOTS); else an issue at the referencing key and None. A config must not make
        the loader read (and a parse error print) arbitrary host files such as /etc/passwd or ../secret.env."""
        target = here / rel
        try:
            resolved = target.resolve()
        except (OSError, RuntimeError):  # a symlink loop: reading it reports the loop
            return target
        roots = [here.resolve(), *allowed_roots()]
        if any(resolved.is_relative_to(root) for root in roots):
            return target
        self.issues.add(doc.file, doc.line_of(at), f"'{rel}' resolves outside the sweep file's folder ({here.resolve()})",
                        field_path=at, allowed="a file inside the sweep file's folder, or allow its folder with "
                        f"{CONFIG_ROOTS_ENV}=/path[:/other] (folders the operator trusts)")
        return None

    def _pin_last_issue(self, doc: YamlDoc, path: tuple[PathPart, ...]) -> None:
        """A referenced file is missing or unreadable: report it at the line and key that reference it."""
        last = self.issues.issues[-1]
        if last.line is None:
            self.issues.issues[-1] = ConfigIssue(
                file=doc.file, line=doc.line_of(path), config_key=None, field_path=format_path(path),
                message=f"{last.file}: {last.message}",
                allowed=last.allowed or "an existing file; relative paths start at the sweep file's folder",
            )

    # -- result ---------------------------------------------------------------------------------------
    def finish(self) -> Sweep:
        sweep = self.sweep
        if self.primary is not None:
            sweep.default = self.primary
        else:  # no valid sweep file (master files only): default settings
            sweep.default = SweepSettings(name=Path(self.files[0]).stem if self.files else "sweep")
        sweep.runners = _merge_runners(self.runner_files)
        sweep.files = tuple(dict.fromkeys(self.files))
        known = sweep.runner_labels()
        if known:
            # InferenceX itself accepts master entries whose label is missing from runners.yaml (the shared
            # fixtures have several: b200-dsv4, gb300-nv, h100-dgxc), so for master files this is a warning;
            # in our own sweep files it is an error.
            warn = IssueCollector()
            for key, entry in sweep.entries.items():
                if entry.runner not in known:
                    doc, base = self.entry_lines[key]
                    sink = warn if key in self.from_master else self.issues
                    sink.add(doc.file, doc.line_of((*base, "runner")), f"unknown runner label '{entry.runner}'",
                             config_key=key, field_path="runner", allowed=_label_hint(entry.runner, known))
            sweep.warnings = warn.issues
        self._check_hardware(sweep)
        self.issues.raise_if_any()
        return sweep

    def _check_hardware(self, sweep: Sweep) -> None:
        """Points against their runner's `hardware:` facts (runners.yaml, since 843c6254f): a single-node
        server must fit on one node, a DRAM-offloading agentic point needs the node's DRAM size, and its
        prefill pool must tile the nodes (upstream's sizing rule). A single-node entry's server must also fit
        the smallest inventory node of its runner label (any of them may be leased)."""
        from infersweep.config.names import quote

        hardware = sweep.runners.hardware if sweep.runners else {}
        for key, entry in sweep.entries.items():
            doc, base = self.entry_lines[key]
            facts = hardware.get(entry.runner)
            nodes = sweep.inventory.get(entry.runner, [])
            smallest = min(nodes, key=lambda n: n.gpus) if nodes else None
            for path, point in entry.points():
                dram = getattr(point, "kv_offloading", None) == "dram"
                if facts is None:
                    if dram:
                        self.issues.add(doc.file, doc.line_of((*base, *path, "kv-offloading")),
                                        f"kv-offloading: dram needs runner '{entry.runner}' in runners.yaml hardware: "
                                        "(its DRAM sizes the offload budget, total-cpu-dram-gb)", config_key=key,
                                        field_path=(*path, "kv-offloading"),
                                        allowed=f"hardware: {{{entry.runner}: {{available-cpu-dram-mib: N, "
                                        "gpus-per-node: 8}}}} in runners.yaml")
                elif not entry.multinode or dram:  # multinode pools span nodes; only DRAM sizes them per node
                    try:
                        facts.node_gpus(point)
                    except NodeFitError as exc:
                        at = (*path, "tp") if point.prefill is None else (*path, "prefill")
                        self.issues.add(doc.file, doc.line_of((*base, *at)), f"{exc} of runner '{entry.runner}'",
                                        config_key=key, field_path=at,
                                        allowed="a layout that fits the node (or divides it), or multinode: true")
                        continue  # one message per layout
                if smallest is None or entry.multinode or point.prefill is not None or point.decode is not None:
                    continue
                gpus = (point.tp or 1) * point.pp * point.pcp_size
                if gpus > smallest.gpus:
                    self.issues.add(doc.file, doc.line_of((*base, *path, "tp")),
                                    f"tp x pp x pcp-size = {gpus} GPUs, more than the {smallest.gpus} GPUs of "
                                    f"inventory node {quote(smallest.name)}, the smallest of runner '{entry.runner}'",
                                    config_key=key, field_path=(*path, "tp"),
                                    allowed=f"a layout of at most {smallest.gpus} GPUs, nodes with more gpus under "
                                    f"inventory: {entry.runner}, or multinode: true")


def safe_resolve(path: Path) -> Path:
    """`path.resolve()`, or the absolute path when it cannot be resolved (a symlink loop raises RuntimeError on
    Python 3.11): reading the file then reports the loop with its name."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path.absolute()


def allowed_roots() -> list[Path]:
    """The operator's extra roots for referenced files (INFERSWEEP_CONFIG_ROOTS), resolved."""
    return [Path(p).expanduser().resolve() for p in os.environ.get(CONFIG_ROOTS_ENV, "").split(":") if p.strip()]


def _merge_runners(files: list[Runners]) -> Runners | None:
    if not files:
        return None
    labels: dict[str, tuple[str, ...]] = {}
    hardware: dict[str, RunnerHardware] = {}
    for r in files:
        labels.update(r.labels)
        hardware.update(r.hardware)
    return Runners(file=", ".join(r.file for r in files), labels=labels, hardware=hardware)


def _label_hint(label: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(label, sorted(known), n=3)
    shown = sorted(known)
    listing = ", ".join(shown[:25]) + (f", … ({len(shown) - 25} more)" if len(shown) > 25 else "")
    prefix = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{prefix}labels in runners.yaml / inventory: {listing}"


def _looks_like_master(data: Any) -> bool:
    if not isinstance(data, dict) or not data:
        return False
    # `any`, not `all`: a malformed entry must still be validated (and reported) as a master entry.
    return any(isinstance(v, dict) and _MASTER_HINT_KEYS & set(v) for v in data.values())


def _display(path: Path) -> str:
    """Paths in messages: relative to the working directory when under it, else absolute."""
    resolved = safe_resolve(path)
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


__all__ = ["FieldProblem", "MasterRef", "Sweep", "SweepFile", "discover", "load_sweep"]
