"""A parse-time cache of the DAG specs, keyed on the stat of every config file they were built from.

The dag-processor re-parses the DAG file every 30 s, while sweep configs change a few times a day. Reading
and validating the InferenceX master files (12k YAML lines) and expanding every job is most of a parse, so
the resulting `DagSpec`s are kept as JSON in the work dir and reused while no input file changed (path,
size, mtime), no configured folder changed its listing (a sweep file added, removed, renamed or edited,
whether it loads or not) and the infersweep version is the same. Any change, or an unreadable cache,
means a full load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from infersweep import __version__
from infersweep.airflow.dagspec import DagSpec, dag_specs
from infersweep.config.sweep import load_sweep, safe_resolve
from infersweep.config.yamlio import track_reads

log = logging.getLogger(__name__)


def _stat_key(files: Sequence[str]) -> list[list[object]]:
    out: list[list[object]] = []
    for f in files:
        st = os.stat(f)
        out.append([f, st.st_size, st.st_mtime_ns])
    return out


def _folder_key(paths: Sequence[Path]) -> list[list[object]]:
    """Each configured folder's YAML entries (name, size, mtime): a file the last load never read, because
    it did not exist yet, still changes the key."""
    out: list[list[object]] = []
    for path in paths:
        if not path.is_dir():
            continue
        entries: list[list[object]] = []
        try:
            with os.scandir(path) as it:
                for entry in it:
                    if entry.name.lower().endswith((".yaml", ".yml")):
                        try:
                            st = entry.stat()
                        except OSError:  # a dangling link is part of the listing too
                            entries.append([entry.name, -1, -1])
                            continue
                        entries.append([entry.name, st.st_size, st.st_mtime_ns])
        except OSError:
            continue
        out.append([str(safe_resolve(path)), sorted(entries)])
    return out


def _cache_file(cache_dir: Path, paths: Sequence[Path]) -> Path:
    # The DagSpec schema is in the key: a spec cached by older code must not be read as a current one.
    schema = json.dumps(DagSpec.model_json_schema(), sort_keys=True)
    ident = "\0".join([__version__, sys.version, schema, *(str(safe_resolve(p)) for p in paths)])
    return cache_dir / f"dagspecs-{hashlib.sha256(ident.encode()).hexdigest()[:20]}.json"


def load_dag_specs(paths: Sequence[str | Path], cache_dir: Path | None) -> list[DagSpec]:
    """`dag_specs(load_sweep(paths))`, served from the cache while none of the files read has changed."""
    resolved = [Path(p) for p in paths]
    if cache_dir is not None:
        target = _cache_file(cache_dir, resolved)
        try:
            cached = json.loads(target.read_text())
            if (cached["stats"] == _stat_key([s[0] for s in cached["stats"]])
                    and cached.get("folders") == _folder_key(resolved)):
                return [DagSpec.model_validate(s) for s in cached["specs"]]
        except (OSError, ValueError, KeyError, TypeError):
            pass  # missing, stale or unreadable: rebuild below
    folders = _folder_key(resolved)  # before the load: a file added during it invalidates the next parse
    with track_reads() as reads:
        specs = dag_specs(load_sweep(resolved))
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            payload = json.dumps({"stats": _stat_key(sorted({str(r) for r in reads})), "folders": folders,
                                  "specs": [s.model_dump(mode="json") for s in specs]})
            fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".dagspecs-", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                fh.write(payload)
            os.replace(tmp, target)
        except OSError as exc:  # a read-only work dir only costs speed
            log.debug("DAG spec cache not written to %s: %s", cache_dir, exc)
    return specs
