"""One download per model per cache domain: a Postgres advisory lock, or a file lock when there is no Postgres.

Sibling nodes that share a network-FS HF cache must not download the same checkpoint at once: that race was
the seed's `WeakFileLock` / `[Errno 116] Stale file handle` failure. huggingface_hub's own per-file locks
live on that same network FS (where flock may be a no-op), so the authoritative lock is held elsewhere:
a session-level `pg_advisory_lock` in the results database, keyed by (cache domain, repo, revision).

The file-lock fallback (`flock` on a file under the cache) is correct between processes on one host and on
filesystems with coherent flock (local disks, NFSv4); use Postgres across nodes on anything else.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from infersweep.faults.errors import InfersweepError

log = logging.getLogger(__name__)

ENV_DB_URL = "INFERSWEEP_DB_URL"


class LockTimeoutError(InfersweepError, TimeoutError):
    """The model lock was not acquired in time (another node is probably still downloading)."""

    kind = "lock_timeout"
    transient = True


@dataclass(frozen=True)
class LockKey:
    """What one download is serialised on."""

    cache_domain: str
    repo_id: str
    revision: str

    def text(self) -> str:
        return f"{self.cache_domain}\x00{self.repo_id}\x00{self.revision}"

    def digest(self) -> str:
        """Hex sha256 of the key (file names)."""
        return hashlib.sha256(self.text().encode()).hexdigest()

    def pg_key(self) -> int:
        """A signed 64-bit key for `pg_advisory_lock(bigint)` (first 8 bytes of the sha256)."""
        return int.from_bytes(hashlib.sha256(self.text().encode()).digest()[:8], "big", signed=True)


class ModelLock(Protocol):
    """A lock provider: `with lock.hold(key, timeout_s): ...`."""

    def hold(self, key: LockKey, timeout_s: float) -> contextlib.AbstractContextManager[None]:
        """Block until `key` is held (or raise LockTimeoutError after `timeout_s`)."""
        ...


def _libpq_url(url: str) -> str:
    # SQLAlchemy spells the driver into the scheme; libpq does not accept it.
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


class PgAdvisoryLock:
    """`pg_advisory_lock` on a dedicated connection; released on exit or when the connection dies.

    `lock_timeout` bounds the wait server-side, so a stuck holder surfaces as LockTimeoutError instead of a
    hung task; the connection itself has a connect timeout and TCP keepalives.
    """

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0) -> None:
        if not url.startswith(("postgresql", "postgres://")):
            raise ValueError("PgAdvisoryLock needs a postgresql:// URL")
        self._url = _libpq_url(url)
        self.connect_timeout_s = connect_timeout_s

    @contextlib.contextmanager
    def hold(self, key: LockKey, timeout_s: float) -> Iterator[None]:
        import psycopg

        conn = psycopg.connect(
            self._url, autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s)),
            keepalives=1, keepalives_idle=30, application_name="infersweep-download-lock",
        )
        try:
            # set_config() instead of SET: SET cannot take a bound parameter.
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (str(max(1, int(timeout_s * 1000))),))
            t0 = time.monotonic()
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (key.pg_key(),))
            except psycopg.errors.LockNotAvailable as exc:
                raise LockTimeoutError(
                    f"download lock for {key.repo_id}@{key.revision} (cache domain {key.cache_domain!r}) not "
                    f"acquired within {timeout_s:.0f} s: another node is downloading it"
                ) from exc
            waited = time.monotonic() - t0
            if waited > 1:
                log.info("download lock %s@%s acquired after %.1f s", key.repo_id, key.revision, waited)
            try:
                yield
            finally:
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key.pg_key(),))
        finally:
            conn.close()


# flock between threads of one process works (separate open file descriptions), but on NFS Linux emulates
# flock with POSIX locks, which are per process: an in-process lock per key keeps threads honest there too.
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(name: str) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(name, threading.Lock())


class FileModelLock:
    """`flock` on `<lock_dir>/<sha256 of key>.lock`, polled until `timeout_s`."""

    def __init__(self, lock_dir: str | os.PathLike[str], *, poll_s: float = 0.2) -> None:
        self.lock_dir = Path(lock_dir)
        self.poll_s = poll_s

    @contextlib.contextmanager
    def hold(self, key: LockKey, timeout_s: float) -> Iterator[None]:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        path = self.lock_dir / f"{key.digest()}.lock"
        deadline = time.monotonic() + timeout_s
        tlock = _thread_lock(str(path))
        if not tlock.acquire(timeout=max(timeout_s, 0)):
            raise self._timeout(key, timeout_s)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise self._timeout(key, timeout_s) from None
                        time.sleep(self.poll_s)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        finally:
            tlock.release()

    @staticmethod
    def _timeout(key: LockKey, timeout_s: float) -> LockTimeoutError:
        return LockTimeoutError(
            f"download lock for {key.repo_id}@{key.revision} (cache domain {key.cache_domain!r}) not acquired "
            f"within {timeout_s:.0f} s: another process is downloading it"
        )


def default_lock(*, pg_url: str | None = None, lock_dir: str | os.PathLike[str]) -> ModelLock:
    """Postgres when a postgresql URL is given (or `INFERSWEEP_DB_URL` is one), else a file lock in `lock_dir`."""
    url = pg_url or os.environ.get(ENV_DB_URL, "")
    if url.startswith(("postgresql", "postgres://")):
        return PgAdvisoryLock(url)
    return FileModelLock(lock_dir)
