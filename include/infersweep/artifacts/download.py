"""The weight-download step: one resumable `snapshot_download` per model per cache domain, then an offline check.

Flow (`download_model`):
1. a local path skips everything;
2. take the model lock (Postgres advisory lock keyed by cache domain + repo + revision; file lock fallback);
3. if the cache already verifies offline against our manifest, stop (a sibling node did the work);
4. otherwise resolve the revision, record the hub's file list + sizes (the manifest), `snapshot_download`
   (resumes partial blobs), and verify offline;
5. failures are classified: transient ones (ESTALE, 5xx/429, timeouts, resets) are retried with exponential
   backoff *inside* the lock, permanent ones (401/403 gated or bad token, 404 repo/revision) raise at once.

`verify_offline` is what the serve step relies on: a `local_files_only` snapshot resolve (exactly what
vLLM does under `HF_HUB_OFFLINE=1`) plus every file's size checked against the manifest.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infersweep.artifacts.credentials import resolve_hf_token
from infersweep.artifacts.locks import LockKey, ModelLock, default_lock
from infersweep.config.inventory import Node
from infersweep.faults import FailureClass, classify, load_corpus
from infersweep.faults.errors import InfersweepError
from infersweep.recipes.model import Recipe

log = logging.getLogger(__name__)

MANIFEST_DIR = "infersweep-manifests"


class DownloadError(InfersweepError, RuntimeError):
    """A download failed. `kind`/`transient`/`hint` come from the failure classification."""

    def __init__(self, message: str, *, kind: str, transient: bool, hint: str, attempts: int) -> None:
        super().__init__(f"{message}\nhint: {hint}" if hint else message, kind=kind, transient=transient, hint=hint)
        self.attempts = attempts


class IncompleteDownloadError(DownloadError):
    """The cache does not hold every file of the manifest at the recorded size."""

    def __init__(self, message: str, *, missing: Sequence[str] = (), wrong_size: Sequence[str] = ()) -> None:
        super().__init__(message, kind="incomplete_download", transient=True,
                         hint="re-run the download step; it resumes partial files", attempts=0)
        self.missing = list(missing)
        self.wrong_size = list(wrong_size)


@dataclass(frozen=True)
class FileEntry:
    """One repo file as the hub described it at download time."""

    path: str
    size: int
    blob_id: str | None = None
    lfs_sha256: str | None = None


@dataclass(frozen=True)
class Manifest:
    """The hub metadata recorded during a download (what `verify_offline` checks against)."""

    repo_id: str
    revision: str
    commit: str
    files: tuple[FileEntry, ...]
    recorded_at: float

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id, "revision": self.revision, "commit": self.commit,
            "recorded_at": self.recorded_at,
            "files": [{"path": f.path, "size": f.size, "blob_id": f.blob_id, "lfs_sha256": f.lfs_sha256}
                      for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            repo_id=data["repo_id"], revision=data["revision"], commit=data["commit"],
            recorded_at=float(data.get("recorded_at", 0.0)),
            files=tuple(FileEntry(**f) for f in data["files"]),
        )


@dataclass(frozen=True)
class DownloadResult:
    """What the download step did; `path` is what the server should load (a snapshot dir or a local path)."""

    repo_id: str
    path: str
    revision: str | None = None
    commit: str | None = None
    local: bool = False
    downloaded: bool = False
    attempts: int = 0
    total_bytes: int | None = None
    files: int | None = None
    seconds: float = 0.0
    errors: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


# ---------------------------------------------------------------------------------------------------------------
# classification
# ---------------------------------------------------------------------------------------------------------------
def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 20:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return int(code) if isinstance(code, int) else None


# Kinds this module can decide exactly (HTTP status, errno) before falling back to the text corpus. Hints come
# from infersweep.faults' corpus when it has the kind, else from here.
_EXACT_HINTS = {
    "gated_repo": "the hub refused the token (401/403, gated or private model): accept the licence on the hub "
                  "and provide a token with access (HF_TOKEN or the Airflow connection)",
    "hub_not_found": "no such repo or revision on the hub (404): fix the model id / revision in the config",
    "hub_offline": "HF_HUB_OFFLINE=1 is set for the download step: unset it there (only serving runs offline)",
    "hub_unavailable": "the hub answered 5xx/429, timed out or reset the connection; retried with backoff",
    "stale_file_handle": "ESTALE on the shared HF cache (another node touched its lock files); retried",
}
_TRANSIENT = {"gated_repo": False, "hub_not_found": False, "hub_offline": False, "hub_unavailable": True,
              "stale_file_handle": True}
_TIMEOUT_NAMES = {"Timeout", "ReadTimeout", "ConnectTimeout", "TimeoutException", "PoolTimeout", "WriteTimeout"}
_CONNECTION_NAMES = {"ConnectError", "RemoteProtocolError", "ReadError", "NetworkError"}


def _exact(kind: str) -> FailureClass:
    corpus_hints = {c.kind: c.hint for c in load_corpus().classes}
    return FailureClass(kind, _TRANSIENT[kind], corpus_hints.get(kind, _EXACT_HINTS[kind]))


def _exact_kind(exc: BaseException) -> str | None:
    from huggingface_hub import errors as hf_errors

    chain = _chain(exc)
    for e in chain:
        if isinstance(e, hf_errors.OfflineModeIsEnabled):
            return "hub_offline"
        if isinstance(e, hf_errors.GatedRepoError):
            return "gated_repo"
        if isinstance(e, hf_errors.RevisionNotFoundError | hf_errors.RepositoryNotFoundError):
            # The hub answers 401 for a missing repo without a token, so a 401 here means "not found".
            return "hub_not_found"
        status = _status(e)
        if status in (401, 403):
            return "gated_repo"
        if status == 404:
            return "hub_not_found"
        if status is not None and (status == 429 or status >= 500):
            return "hub_unavailable"
    for e in chain:
        if isinstance(e, OSError) and e.errno == errno.ESTALE:
            return "stale_file_handle"
        if isinstance(e, TimeoutError | ConnectionError) or type(e).__name__ in _TIMEOUT_NAMES | _CONNECTION_NAMES:
            return "hub_unavailable"
    return None


def classify_download_error(exc: BaseException) -> FailureClass:
    """Transient or permanent, for one download failure (the whole cause chain is inspected).

    Exact signals (HTTP status, typed hub errors, errno) decide first; anything else goes to the shared
    text corpus (`infersweep.faults.classify`), whose `unknown` class is retried once.
    """
    kind = _exact_kind(exc)
    return _exact(kind) if kind is not None else classify(exc)


# ---------------------------------------------------------------------------------------------------------------
# paths and manifests
# ---------------------------------------------------------------------------------------------------------------
def is_local_model(model: str) -> bool:
    """A filesystem path (absolute, ./ or ../, or an existing directory) rather than a hub repo id."""
    return model.startswith(("/", "./", "../", "~")) or os.path.isdir(model)


def hub_cache_dir(*, hf_home: str | os.PathLike[str] | None = None,
                  cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The hub cache: `cache_dir`, else `<hf_home>/hub` (what the server sees with HF_HOME=hf_home)."""
    if cache_dir is not None:
        return Path(cache_dir)
    if hf_home is not None:
        return Path(hf_home) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _storage_folder(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def manifest_path(cache: Path, repo_id: str, commit: str) -> Path:
    """Where the manifest for one commit lives (inside the repo's cache folder, next to the hub's own)."""
    return _storage_folder(cache, repo_id) / MANIFEST_DIR / f"{commit}.json"


def _resolve_commit_offline(cache: Path, repo_id: str, revision: str) -> str | None:
    from huggingface_hub.file_download import REGEX_COMMIT_HASH

    if REGEX_COMMIT_HASH.fullmatch(revision):
        return revision
    ref = _storage_folder(cache, repo_id) / "refs" / revision
    return ref.read_text().strip() if ref.is_file() else None


def load_manifest(cache: Path, repo_id: str, revision: str) -> Manifest | None:
    """The recorded manifest for `revision` (via the cache's refs), or None."""
    commit = _resolve_commit_offline(cache, repo_id, revision)
    if commit is None:
        return None
    path = manifest_path(cache, repo_id, commit)
    if not path.is_file():
        return None
    return Manifest.from_json(json.loads(path.read_text()))


def _write_manifest(cache: Path, manifest: Manifest) -> Path:
    path = manifest_path(cache, manifest.repo_id, manifest.commit)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest.to_json(), indent=1, sort_keys=True))
    os.replace(tmp, path)  # atomic: a reader never sees half a manifest
    return path


def verify_offline(repo_id: str, *, revision: str | None = None, hf_home: str | os.PathLike[str] | None = None,
                   cache_dir: str | os.PathLike[str] | None = None) -> DownloadResult:
    """Check the cache is complete for serving with `HF_HUB_OFFLINE=1`; raise IncompleteDownloadError if not.

    Resolves the snapshot without network (`local_files_only=True`, what HF_HUB_OFFLINE=1 does) and checks
    every manifest file exists at its recorded size (blobs are followed through the snapshot symlinks).
    A local model path only has to exist.
    """
    if is_local_model(repo_id):
        path = Path(repo_id).expanduser()
        if not path.exists():
            raise IncompleteDownloadError(f"local model path {path} does not exist")
        return DownloadResult(repo_id=repo_id, path=str(path), local=True)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    rev = revision or "main"
    cache = hub_cache_dir(hf_home=hf_home, cache_dir=cache_dir)
    manifest = load_manifest(cache, repo_id, rev)
    if manifest is None:
        raise IncompleteDownloadError(
            f"{repo_id}@{rev}: no download manifest in {cache} (the download step has not completed here)"
        )
    try:
        snapshot = snapshot_download(repo_id, revision=rev, cache_dir=str(cache), local_files_only=True)
    except LocalEntryNotFoundError as exc:
        raise IncompleteDownloadError(f"{repo_id}@{rev}: offline snapshot resolve failed: {exc}") from exc
    missing: list[str] = []
    wrong: list[str] = []
    for f in manifest.files:
        p = Path(snapshot) / f.path
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            missing.append(f.path)
            continue
        if size != f.size:
            wrong.append(f"{f.path} ({size} != {f.size})")
    if missing or wrong:
        raise IncompleteDownloadError(
            f"{repo_id}@{rev} ({manifest.commit[:12]}) is incomplete in {cache}: "
            f"{len(missing)} missing {missing[:3]}, {len(wrong)} wrong size {wrong[:3]}",
            missing=missing, wrong_size=wrong,
        )
    return DownloadResult(repo_id=repo_id, path=str(snapshot), revision=rev, commit=manifest.commit,
                          total_bytes=manifest.total_bytes, files=len(manifest.files))


# ---------------------------------------------------------------------------------------------------------------
# download
# ---------------------------------------------------------------------------------------------------------------
def _record_manifest(api: Any, repo_id: str, revision: str, commit: str) -> Manifest:
    from huggingface_hub.hf_api import RepoFile

    files = tuple(sorted(
        (FileEntry(path=f.path, size=int(f.size), blob_id=f.blob_id,
                   lfs_sha256=f.lfs.sha256 if f.lfs is not None else None)
         for f in api.list_repo_tree(repo_id, recursive=True, revision=commit) if isinstance(f, RepoFile)),
        key=lambda f: f.path,
    ))
    return Manifest(repo_id=repo_id, revision=revision, commit=commit, files=files, recorded_at=time.time())


def _download_once(repo_id: str, revision: str, cache: Path, token: str | None, endpoint: str | None,
                   etag_timeout_s: float, max_workers: int) -> Manifest:
    from huggingface_hub import HfApi, snapshot_download

    api = HfApi(endpoint=endpoint, token=token)
    info = api.model_info(repo_id, revision=revision, timeout=etag_timeout_s)
    if not info.sha:
        raise RuntimeError(f"hub returned no commit for {repo_id}@{revision}")
    manifest = _record_manifest(api, repo_id, revision, info.sha)
    snapshot = snapshot_download(
        repo_id, revision=revision, cache_dir=str(cache), token=token, endpoint=endpoint,
        etag_timeout=etag_timeout_s, max_workers=max_workers,
    )
    commit = Path(snapshot).name
    if commit != manifest.commit:
        # The branch moved between our listing and the download: record the commit actually fetched.
        manifest = _record_manifest(api, repo_id, revision, commit)
    _write_manifest(cache, manifest)
    return manifest


def download_model(
    repo_id: str,
    *,
    revision: str | None = None,
    hf_home: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    token: str | None = None,
    token_conn_id: str | None = None,
    cache_domain: str | None = None,
    lock: ModelLock | None = None,
    pg_url: str | None = None,
    lock_timeout_s: float = 6 * 3600.0,
    endpoint: str | None = None,
    max_attempts: int = 5,
    backoff_base_s: float = 5.0,
    backoff_max_s: float = 120.0,
    etag_timeout_s: float = 30.0,
    max_workers: int = 8,
    refresh: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> DownloadResult:
    """Make `repo_id@revision` complete in the node's HF cache, once per cache domain; see module docstring.

    `lock_timeout_s` defaults to 6 h because a sibling may be pulling a ~450 GB checkpoint. The token comes
    from `token`, else Airflow connection `token_conn_id`, else `HF_TOKEN`; it is never logged.

    A cache that already verifies for `revision` is used as is (no hub call), so a branch name stays on the
    commit first downloaded into this cache — what a benchmark series wants. Pass a commit hash to pin
    explicitly, or `refresh=True` to ask the hub whether the branch moved.
    """
    started = time.monotonic()
    if is_local_model(repo_id):
        path = Path(repo_id).expanduser()
        if not path.exists():
            raise DownloadError(f"local model path {path} does not exist", kind="config_error", transient=False,
                                hint="fix the model path in the config", attempts=0)
        return DownloadResult(repo_id=repo_id, path=str(path), local=True)
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    rev = revision or "main"
    cache = hub_cache_dir(hf_home=hf_home, cache_dir=cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    token = token or resolve_hf_token(conn_id=token_conn_id)
    domain = cache_domain or str(cache.resolve())
    key = LockKey(cache_domain=domain, repo_id=repo_id, revision=rev)
    lock = lock or default_lock(pg_url=pg_url, lock_dir=cache / ".infersweep-locks")

    errors: list[str] = []
    with lock.hold(key, lock_timeout_s):
        found = None
        if not refresh:
            try:
                found = verify_offline(repo_id, revision=rev, cache_dir=cache)
            except IncompleteDownloadError:
                found = None
        if found is not None:
            log.info("download: %s@%s already complete in %s (%s files)", repo_id, rev, cache, found.files)
            return DownloadResult(**{**found.__dict__, "attempts": 0,
                                     "seconds": round(time.monotonic() - started, 3)})
        for attempt in range(1, max_attempts + 1):
            try:
                manifest = _download_once(repo_id, rev, cache, token, endpoint, etag_timeout_s, max_workers)
                checked = verify_offline(repo_id, revision=rev, cache_dir=cache)
            except Exception as exc:
                fc = classify_download_error(exc)
                errors.append(f"attempt {attempt}: {fc.kind}: {type(exc).__name__}: {_first_line(exc)}")
                if not fc.transient:
                    raise DownloadError(f"download of {repo_id}@{rev} failed permanently: {_first_line(exc)}",
                                        kind=fc.kind, transient=False, hint=fc.hint, attempts=attempt) from exc
                budget = max_attempts if fc.max_retries is None else min(max_attempts, 1 + fc.max_retries)
                if attempt >= budget:
                    raise DownloadError(
                        f"download of {repo_id}@{rev} failed after {attempt} attempts: {_first_line(exc)}",
                        kind=fc.kind, transient=True, hint=fc.hint, attempts=attempt,
                    ) from exc
                delay = min(backoff_max_s, backoff_base_s * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
                log.warning("download: %s@%s attempt %d/%d: %s (%s); retrying in %.1f s",
                            repo_id, rev, attempt, max_attempts, fc.kind, _first_line(exc), delay)
                sleep(delay)
                continue
            log.info("download: %s@%s complete (%d files, %d bytes) after %d attempt(s)",
                     repo_id, rev, len(manifest.files), manifest.total_bytes, attempt)
            return DownloadResult(
                repo_id=repo_id, path=checked.path, revision=rev, commit=manifest.commit, downloaded=True,
                attempts=attempt, total_bytes=manifest.total_bytes, files=len(manifest.files),
                seconds=round(time.monotonic() - started, 3), errors=tuple(errors),
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def download_recipe_models(recipe: Recipe, *, node: Node | None = None, **kwargs: Any) -> list[DownloadResult]:
    """Download a recipe's model and its speculative-decoding drafter (if any), in that order.

    The cache is the node's (`node.hf_home`/hub, and `node.cache_domain` for the lock) unless `cache_dir` /
    `hf_home` / `cache_domain` are given in `kwargs`, which go to `download_model`.
    """
    if node is not None:
        if "cache_dir" not in kwargs and "hf_home" not in kwargs and node.hf_home:
            kwargs["hf_home"] = node.hf_home
        kwargs.setdefault("cache_domain", node.cache_domain)
    models = [recipe.model, *([recipe.draft_model] if recipe.draft_model else [])]
    return [download_model(m, **kwargs) for m in models]
