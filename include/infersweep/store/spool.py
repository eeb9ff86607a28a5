"""A local write-ahead spool: every result is fsynced to a jsonl file before the database sees it.

A crash (or a Postgres restart) between a benchmark and its DB write therefore loses nothing: the record
waits in the spool and is flushed by the next write or by the teardown's explicit `flush()`. Replaying a
record is harmless because every DB write is an upsert on a natural key.

Concurrency: appends and flushes take an exclusive `flock` on a sidecar lock file, so tasks in several
processes on one host (and threads in one process) can share a spool. The spool is per host: a record
spooled on a worker that is then destroyed is lost with its disk (state this when running a fleet).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import exc as sa_exc

from infersweep.faults.errors import InfersweepError

log = logging.getLogger(__name__)

#: Errors meaning "the database is not reachable right now": keep the record and try later.
UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)
#: Errors meaning "this record can never be written": move it to the rejected file.
REJECTED = (sa_exc.IntegrityError, sa_exc.DataError, KeyError, ValueError, TypeError)


class SpoolLockTimeout(InfersweepError, TimeoutError):
    """Another process held the spool lock for longer than the deadline."""

    kind = "spool_lock_timeout"
    transient = True


@dataclass
class FlushResult:
    """What one flush did."""

    applied: int = 0
    remaining: int = 0
    rejected: int = 0
    error: str | None = None
    errors: list[str] = field(default_factory=list)
    applied_in_last: int = 0  # records handled (applied or rejected) by the last one-by-one pass

    @property
    def complete(self) -> bool:
        return self.remaining == 0


class Spool:
    """An fsynced jsonl file of pending records, `{"id", "kind", "ts", "data"}` per line."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.rejected_path = self.path.with_name(self.path.name + ".rejected")

    @contextlib.contextmanager
    def _locked(self, timeout_s: float | None) -> Iterator[bool]:
        """Hold the exclusive lock; yields False (not locked) when `timeout_s=0` and the lock is busy."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            acquired = False
            while not acquired:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    acquired = True
                except BlockingIOError:
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    time.sleep(0.01)
            if not acquired:
                if timeout_s == 0:
                    yield False
                    return
                raise SpoolLockTimeout(f"spool {self.path} stayed locked for {timeout_s} s")
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def append(self, kind: str, data: dict[str, Any], *, timeout_s: float = 120.0) -> str:
        """Write one record durably (fsync) and return its id."""
        record_id = uuid.uuid4().hex
        line = orjson.dumps({"id": record_id, "kind": kind, "ts": time.time(), "data": data}) + b"\n"
        with self._locked(timeout_s), open(self.path, "ab") as fh:
            if fh.tell() > 0 and not self._ends_with_newline():
                fh.write(b"\n")  # a crash mid-append left a torn line: keep our record off it
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return record_id

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def pending(self) -> list[dict[str, Any]]:
        """The records not yet flushed (a torn last line from a crash mid-append is skipped)."""
        return self._read()[0]

    def _read(self) -> tuple[list[dict[str, Any]], list[bytes]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return [], []
        records, torn = [], []
        for raw in data.splitlines():
            if not raw.strip():
                continue
            try:
                records.append(orjson.loads(raw))
            except orjson.JSONDecodeError:
                torn.append(raw)
        return records, torn

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        if not records:  # the common case (all delivered): truncate in place, one fsync
            with open(self.path, "r+b") as fh:
                fh.truncate(0)
                fh.flush()
                os.fsync(fh.fileno())
            return
        # Otherwise write the survivors to a new file and rename it over the old one (atomic).
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "wb") as fh:
            for rec in records:
                fh.write(orjson.dumps(rec) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _reject(self, rec: dict[str, Any] | bytes, reason: str) -> None:
        payload = rec if isinstance(rec, dict) else {"torn_line": rec.decode("utf-8", "replace")}
        with open(self.rejected_path, "ab") as fh:
            fh.write(orjson.dumps({"reason": reason, "record": payload}) + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    def flush(
        self,
        apply: Callable[[list[dict[str, Any]]], None],
        *,
        lock_timeout_s: float | None = 120.0,
        batch: int = 200,
    ) -> FlushResult:
        """Apply pending records in order, `batch` per call (one DB transaction each).

        Stops at the first "DB unavailable" error and keeps the rest. A batch that fails on a bad record
        is retried record by record, so only the bad record goes to the `.rejected` file. With
        `lock_timeout_s=0` a flush already running elsewhere makes this call return at once (that flush,
        or the next one, writes our records).
        """
        result = FlushResult()
        with self._locked(lock_timeout_s) as locked:
            if not locked:
                result.remaining = -1
                return result
            records, torn = self._read()
            for raw in torn:
                self._reject(raw, "unparsable line (torn write?)")
                result.rejected += 1
            done = 0
            try:
                while done < len(records):
                    chunk = records[done: done + batch]
                    try:
                        apply(chunk)
                        result.applied += len(chunk)
                        done += len(chunk)
                    except UNAVAILABLE as exc:
                        result.error = f"{type(exc).__name__}: {_first_line(exc)}"
                        break
                    except REJECTED:
                        if not self._one_by_one(apply, chunk, result):
                            done += result.applied_in_last
                            break
                        done += len(chunk)
            finally:
                # Also on unexpected errors (e.g. schema not migrated): keep exactly what was not applied.
                keep = records[done:]
                if torn or done:
                    self._rewrite(keep)
                result.remaining = len(keep)
        return result

    def _one_by_one(self, apply: Callable[[list[dict[str, Any]]], None], chunk: list[dict[str, Any]],
                    result: FlushResult) -> bool:
        """Apply a chunk record by record, rejecting bad ones; False if the DB became unavailable."""
        result.applied_in_last = 0
        for rec in chunk:
            try:
                apply([rec])
                result.applied += 1
            except UNAVAILABLE as exc:
                result.error = f"{type(exc).__name__}: {_first_line(exc)}"
                return False
            except REJECTED as exc:
                reason = f"{type(exc).__name__}: {_first_line(exc)}"
                log.error("spool record %s (%s) rejected: %s", rec.get("id"), rec.get("kind"), reason)
                self._reject(rec, reason)
                result.rejected += 1
                result.errors.append(reason)
            result.applied_in_last += 1
        return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
