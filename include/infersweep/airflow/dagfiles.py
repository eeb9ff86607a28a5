"""Sweep DAGs spread over generated DAG files: one sweep file costs only its own DAGs.

Airflow's unit of failure and of parallelism is the DAG file: an exception while importing one removes every
DAG that file defines and shows the error in the UI's import-error list; the dag-processor parses files in
parallel, each under its own import timeout. So each *source* (a sweep file, or an InferenceX master file
named directly in INFERSWEEP_CONFIGS) gets its own generated DAG file under `<dags folder>/infersweep_sweeps/`,
and a source with many keys is split over several files by a stable hash of the DAG id:

* a broken source raises its ConfigError (file, line, key, fix) from its own file only: the other sources'
  DAGs and the report DAG (which lives in `dags/infersweep_dags.py` and reads no config) are untouched;
* a 2,000-key fleet is parsed as a dozen files of at most `dags_per_file` DAGs each, in parallel.

The files are written by `sync_dag_files`: at bootstrap (`infersweep airflow sync-dags`, docker-compose's init)
and on every parse of `dags/infersweep_dags.py`, so a sweep file added to a configured folder gets its DAG
file at the next parse, and a removed one loses it. A generated file whose source is no longer configured
defines nothing (a copy left behind by another environment is inert). Writes are atomic and only happen
when a file's text changes, so an unchanged config never touches the dags folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infersweep.airflow.settings import AirflowSettings
from infersweep.config.errors import ConfigError, ConfigIssue

log = logging.getLogger(__name__)

#: Sub-folder of the dags folder that holds the generated files (ours alone: sync deletes strays in it).
SUBDIR = "infersweep_sweeps"
#: First line of every generated file; sync only ever deletes files that start with it.
MARKER = "# infersweep: generated DAG file"
#: Seconds of (cold) config loading a sync may spend before it stops reading sources (see plan_dag_files).
SYNC_BUDGET_S = 10.0


@dataclass(frozen=True)
class DagFile:
    """One generated DAG file: a source's DAGs whose stable hash falls in `shard` of `shards`."""

    source: str
    shard: int
    shards: int
    #: config key → "file:line" of its first definition, for keys an earlier source already defines.
    conflicts: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9]+", "_", Path(self.source).stem).strip("_").lower()[:60] or "sweep"
        digest = hashlib.sha256(self.source.encode()).hexdigest()[:8]
        return f"{stem}_{digest}_{self.shard + 1}of{self.shards}.py"

    def text(self) -> str:
        """The file's Python source: a docstring naming the source, and one call."""
        conflicts = dict(self.conflicts)
        return "\n".join([
            MARKER,
            f'"""Airflow DAG file for the sweep DAGs of {self.source!r} (part {self.shard + 1} of {self.shards}).',
            "",
            "Written by infersweep (`infersweep airflow sync-dags`, or any parse of dags/infersweep_dags.py) from",
            "INFERSWEEP_CONFIGS; rewritten when the configs change, removed when the source leaves them. Do not edit.",
            '"""',
            "from infersweep.airflow.dagfiles import load_dag_file",
            "",
            f"load_dag_file(globals(), source={self.source!r}, shard={self.shard}, shards={self.shards}, "
            f"conflicts={conflicts!r})",
            "",
        ])


def shard_of(dag_id: str, shards: int) -> int:
    """Which of a source's files holds `dag_id` (stable across processes and Python versions)."""
    return zlib.crc32(dag_id.encode()) % shards if shards > 1 else 0


def config_sources(paths: Sequence[str | Path]) -> list[Path]:
    """The sources of the configured paths, each its own DAG file: every sweep file of a folder, every file
    named directly. A folder without sweep files, or a missing path, is kept as a source of its own so its
    DAG file reports the problem. Resolved, de-duplicated, in configuration order."""
    from infersweep.config.sweep import discover, safe_resolve

    out: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        found: list[Path] = []
        if path.is_dir():
            try:
                found = discover([path])
            except (OSError, ValueError, ConfigError) as exc:  # the folder's own file reports it
                log.warning("cannot list %s: %s", path, exc)
        for p in found or [path]:
            out[safe_resolve(p)] = None  # a symlink loop keeps its name; loading it reports the loop
    return list(out)


@dataclass
class SyncReport:
    """What `sync_dag_files` did: files written, removed and unchanged, and the sources that did not load."""

    folder: Path
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)


def plan_dag_files(paths: Sequence[str | Path], settings: AirflowSettings) -> tuple[list[DagFile], dict[str, str]]:
    """The DAG files the configured paths need, and the sources that fail to load (source → first error line).

    Loading goes through the parse cache, so with unchanged configs this reads JSON only. A source that fails
    gets a single file, which raises its error when parsed."""
    from infersweep.airflow.parse_cache import load_dag_specs

    files: list[DagFile] = []
    broken: dict[str, str] = {}
    owner: dict[str, str] = {}  # config key → "file:line" of the source that defines it first
    started = time.monotonic()
    for source in config_sources(paths):
        if time.monotonic() - started > SYNC_BUDGET_S:
            # The report DAG's file runs this under Airflow's import timeout: past the budget, a source gets one
            # file unread. That file's own parse fills the cache, and the next sync splits it if it is large.
            files.append(DagFile(str(source), 0, 1))
            continue
        try:
            specs = load_dag_specs([source], settings.parse_cache_dir)
        except Exception as exc:
            broken[str(source)] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            files.append(DagFile(str(source), 0, 1))
            continue
        conflicts = tuple(sorted((s.dag_id, owner[s.dag_id]) for s in specs if s.dag_id in owner))
        for s in specs:
            owner.setdefault(s.dag_id, s.defined_at or str(source))
        shards = 1 if conflicts else max(1, math.ceil(len(specs) / settings.dags_per_file))
        files.extend(DagFile(str(source), i, shards, conflicts) for i in range(shards))
    return files, broken


def sync_dag_files(dags_folder: Path, paths: Sequence[str | Path] | None = None,
                   settings: AirflowSettings | None = None) -> SyncReport:
    """Make `<dags_folder>/infersweep_sweeps/` hold exactly the DAG files the configured sources need."""
    settings = settings or AirflowSettings.from_env()
    wanted, broken = plan_dag_files(list(paths) if paths is not None else list(settings.config_paths), settings)
    folder = dags_folder / SUBDIR
    report = SyncReport(folder=folder, broken=broken)
    folder.mkdir(parents=True, exist_ok=True)
    texts = {f.name: f.text() for f in wanted}
    for name, text in texts.items():
        target = folder / name
        try:
            if target.read_text(encoding="utf-8") == text:
                report.unchanged.append(name)
                continue
        except OSError:
            pass
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".txt")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, target)  # the dag-processor never sees a half-written file
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        report.written.append(name)
    for stale in sorted(folder.glob("*.py")):
        if stale.name in texts:
            continue
        try:
            with stale.open(encoding="utf-8") as fh:
                ours = fh.readline().rstrip("\n") == MARKER
        except (OSError, UnicodeDecodeError):
            ours = False
        if ours:
            stale.unlink(missing_ok=True)
            report.removed.append(stale.name)
    return report


def sync_from_dag_file(dag_file: str) -> None:
    """`dags/infersweep_dags.py`'s call: sync the generated files beside it. Never raises: the report DAG in
    that file must survive anything the configs do; problems are logged (and each broken source's own file
    shows its error)."""
    settings = AirflowSettings.from_env()
    if not settings.sync_dag_files:
        return
    try:
        report = sync_dag_files(Path(dag_file).parent, settings=settings)
    except Exception as exc:
        log.warning("infersweep: generated DAG files not synced (%s: %s); run `infersweep airflow sync-dags` "
                    "where the dags folder is writable", type(exc).__name__, exc)
        return
    if report.written or report.removed:
        log.info("infersweep: DAG files written %s, removed %s in %s", report.written, report.removed, report.folder)


def load_dag_file(globals_dict: dict[str, Any], *, source: str, shard: int, shards: int,
                  conflicts: dict[str, str] | None = None) -> dict[str, Any]:
    """A generated file's body: build its share of `source`'s DAGs into the module, or raise the source's
    ConfigError (the file's import error in the UI: file, line, key and fix)."""
    from infersweep.airflow.parse_cache import load_dag_specs

    settings = AirflowSettings.from_env()
    if Path(source) not in config_sources(settings.config_paths):
        log.info("infersweep: %s is no longer configured (INFERSWEEP_CONFIGS); this file defines no DAGs", source)
        return {}
    if conflicts:
        raise ConfigError([
            ConfigIssue(file=source, line=None, config_key=key, field_path="",
                        message=f"config key already defined at {where}; its DAG comes from there and this "
                                "file defines no DAGs until the clash is resolved",
                        allowed="unique config keys across the configured sweep files: rename or remove one")
            for key, where in sorted(conflicts.items())
        ])
    specs = [s for s in load_dag_specs([source], settings.parse_cache_dir) if shard_of(s.dag_id, shards) == shard]
    wanted = _parsing_dag_id()
    if wanted is not None:  # a worker running one task parses this file for one DAG only
        specs = [s for s in specs if s.dag_id == wanted]
    dags = _build_all(specs, settings, source)
    for dag_id, dag in dags.items():
        globals_dict[re.sub(r"\W", "_", dag_id)] = dag
    return dags


def _build_all(specs: Sequence[Any], settings: AirflowSettings, source: str) -> dict[str, Any]:
    import gc

    from infersweep.airflow.factory import build_sweep_dag

    # Building hundreds of operators allocates millions of short-lived objects; the cyclic GC's full passes
    # over them were a large, erratic share of the parse (1.4-4.1 s at fleet size). Collect once afterwards.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return {s.dag_id: build_sweep_dag(s, settings, source=source) for s in specs}
    finally:
        if was_enabled:
            gc.enable()


def _parsing_dag_id() -> str | None:
    try:
        from airflow.sdk import get_parsing_context
    except ImportError:  # pragma: no cover - older SDKs
        return None
    return get_parsing_context().dag_id


def load_dagbag(dags_folder: str | Path) -> Any:
    """A DagBag of `dags_folder` after syncing its generated files with the configs (the demo, tests and
    perf scripts: a DagBag lists the folder before parsing, so files written during its parse are missed)."""
    from airflow.dag_processing.dagbag import DagBag

    sync_dag_files(Path(dags_folder))
    return DagBag(dag_folder=str(dags_folder))
