"""Local-process backend: run a recipe's argv (e.g. `vllm serve …`) in its own process group.

The server's stdout and stderr go to a log file. `stop` works from the handle alone (PID, process group,
start time), so a later Airflow task in another process can stop a server an earlier task started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from infersweep.config.inventory import Node
from infersweep.engines.base import Engine, EngineError, ServerHandle
from infersweep.engines.readiness import ReadyInfo, health_path, tail_lines, wait_ready
from infersweep.fsnames import safe_filename
from infersweep.recipes.model import Recipe

#: Seconds to wait for the group to vanish after SIGKILL before reporting a leak.
KILL_WAIT_S = 10.0
_TAIL_BYTES = 256 * 1024


def default_log_dir() -> Path:
    """`$INFERSWEEP_LOG_DIR`, else `<tmp>/infersweep-logs`."""
    return Path(os.environ.get("INFERSWEEP_LOG_DIR") or Path(tempfile.gettempdir()) / "infersweep-logs")


_SECRET_FLAGS = ("--api-key", "--hf-token", "--token")


def redact_argv(argv: list[str]) -> list[str]:
    """argv with the values of secret-bearing flags replaced, for logs and handles."""
    out: list[str] = []
    hide = False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in _SECRET_FLAGS:
            if eq:
                out.append(f"{flag}=***")
            else:
                out.append(arg)
                hide = True
            continue
        out.append(arg)
    return out


#: Prefix of a server's private temp dir; `stop` only ever deletes a directory carrying it.
_TMP_PREFIX = "isw-srv-"


def vllm_executable() -> str:
    """The `vllm` program recipes start: `$INFERSWEEP_VLLM_BIN` (e.g. a separate venv's), else `vllm` on PATH."""
    return os.environ.get("INFERSWEEP_VLLM_BIN") or "vllm"


class ProcessEngine(Engine):
    """Start any recipe argv as a local process group; vLLM on a workstation is the main user."""

    name = "vllm-process"

    def __init__(self, *, log_dir: str | Path | None = None, poll_interval_s: float = 2.0,
                 http_timeout_s: float = 5.0) -> None:
        self.log_dir = Path(log_dir) if log_dir else default_log_dir()
        self.poll_interval_s = poll_interval_s
        self.http_timeout_s = http_timeout_s
        self._procs: dict[int, subprocess.Popen[bytes]] = {}

    # --- start -------------------------------------------------------------------------------------
    def command(self, recipe: Recipe, node: Node | None) -> list[str]:
        """The recipe's argv; for `vllm serve`, the program is `vllm_executable()` and `--host` the node's.

        Subclasses map recipes onto other programs.
        """
        if not recipe.argv:
            raise EngineError("the recipe has an empty argv")
        argv = list(recipe.argv)
        if argv[:2] == ["vllm", "serve"]:
            argv[0] = vllm_executable()
            if not any(a == "--host" or a.startswith("--host=") for a in argv):
                # vLLM binds 0.0.0.0 by default; a local server listens only where its clients reach it.
                argv += ["--host", node.host if node is not None else "127.0.0.1"]
        return argv

    def start(self, recipe: Recipe, node: Node | None = None) -> ServerHandle:
        """Spawn the server in a new session (its own process group) and return at once."""
        argv = self.command(recipe, node)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        group_name = safe_filename(recipe.serve_group or "server", max_len=80, ascii_only=True, squeeze=True)
        log_path = self.log_dir / f"{self.name}-{group_name}-{recipe.port}-{stamp}-{os.getpid()}.log"
        env = {**os.environ, **recipe.env}
        tmp_dir = None
        if Path(argv[0]).name == "vllm" and argv[1:2] == ["serve"]:
            # A private temp dir: vLLM puts its ZMQ IPC sockets (/tmp/<uuid>, 7 per start) in TMPDIR or
            # VLLM_RPC_BASE_PATH and never removes them; `stop` deletes the directory. Kept short (in the
            # system temp dir, not the log dir) because a unix socket path is limited to 107 bytes.
            tmp_dir = tempfile.mkdtemp(prefix=_TMP_PREFIX)
            env = {**os.environ, "TMPDIR": tmp_dir, "VLLM_RPC_BASE_PATH": tmp_dir, **recipe.env}
        with open(log_path, "ab") as log:
            log.write(f"# infersweep {self.name}: {' '.join(redact_argv(argv))}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
            except OSError as exc:
                if tmp_dir:
                    shutil.rmtree(tmp_dir, ignore_errors=True)
                raise EngineError(f"cannot start {argv[0]!r}: {exc.strerror or exc}") from exc
        self._procs[proc.pid] = proc
        try:
            create_time = psutil.Process(proc.pid).create_time()
        except psutil.Error:  # already gone: wait_ready reports it with the log
            create_time = None
        host = node.host if node is not None else "127.0.0.1"
        return ServerHandle(
            base_url=f"http://{host}:{recipe.port}", id=str(proc.pid), log_path=str(log_path), backend=self.name,
            node=node.name if node is not None else None,
            extra={"pid": proc.pid, "pgid": proc.pid, "create_time": create_time, "argv": redact_argv(argv),
                   "ready_timeout_s": recipe.ready_timeout_s, "started_at": time.time(), "tmp_dir": tmp_dir,
                   "health_path": health_path(recipe.framework)},
        )

    # --- liveness ----------------------------------------------------------------------------------
    def is_alive(self, handle: ServerHandle) -> bool:
        """Whether the server's main process is still running (zombies count as dead)."""
        pid = int(handle.extra["pid"])
        proc = self._procs.get(pid)
        if proc is not None:
            return proc.poll() is None
        try:
            p = psutil.Process(pid)
            if handle.extra.get("create_time") is not None and abs(p.create_time() - handle.extra["create_time"]) > 0.5:
                return False  # the PID was reused by another process
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _group_alive(self, handle: ServerHandle) -> bool:
        pid = int(handle.extra["pid"])
        if (proc := self._procs.get(pid)) is not None:
            proc.poll()  # reap our own child so a zombie leader does not keep the group "alive"
        try:
            os.killpg(int(handle.extra["pgid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return any(p.status() != psutil.STATUS_ZOMBIE for p in _group_members(int(handle.extra["pgid"])))

    # --- readiness ---------------------------------------------------------------------------------
    def wait_ready(self, handle: ServerHandle, deadline_s: float | None = None) -> None:
        """Poll /health then /v1/models (default deadline: the recipe's ready timeout); record /version."""
        deadline = deadline_s if deadline_s is not None else float(handle.extra.get("ready_timeout_s", 3600.0))
        info = wait_ready(
            handle.base_url, deadline_s=deadline, is_alive=lambda: self.is_alive(handle),
            logs=lambda n: self.logs(handle, tail=n), what=f"{self.name} server (pid {handle.id})",
            poll_interval_s=self.poll_interval_s, http_timeout_s=self.http_timeout_s,
            health=str(handle.extra.get("health_path", "/health")),
        )
        record_ready(handle, info)

    # --- logs --------------------------------------------------------------------------------------
    def logs(self, handle: ServerHandle, tail: int | None = None) -> str:
        """The log file's text, or its last `tail` lines (read from the end, so big logs stay cheap)."""
        if not handle.log_path:
            return ""
        path = Path(handle.log_path)
        try:
            with open(path, "rb") as f:
                if tail is not None:
                    size = f.seek(0, os.SEEK_END)
                    f.seek(max(0, size - _TAIL_BYTES))
                data = f.read()
        except FileNotFoundError:
            return ""
        return tail_lines(data.decode("utf-8", errors="replace"), tail)

    # --- stop --------------------------------------------------------------------------------------
    def stop(self, handle: ServerHandle, grace_s: float = 30.0) -> str:
        """Collect logs, SIGTERM the group, wait `grace_s`, SIGKILL the group. Idempotent.

        Safe on a half-started or already dead server. Returns the full log text.
        """
        self.logs(handle)  # collected before any signal, as the interface promises
        if handle.extra.get("stopped"):
            return self.logs(handle)
        pgid = int(handle.extra["pgid"])
        if self._leader_reused(handle):
            _remove_tmp_dir(handle)
            handle.extra["stopped"] = True
            return self.logs(handle)
        _killpg(pgid, signal.SIGTERM)
        if not self._wait_group_gone(handle, grace_s):
            _killpg(pgid, signal.SIGKILL)
            if not self._wait_group_gone(handle, KILL_WAIT_S):
                raise EngineError(f"process group {pgid} survived SIGKILL for {KILL_WAIT_S:.0f} s",
                                  log_tail=self.logs(handle, tail=50))
            handle.extra["killed"] = True
        proc = self._procs.pop(int(handle.extra["pid"]), None)
        if proc is not None:
            handle.extra["exit_code"] = proc.poll()
        _remove_tmp_dir(handle)
        handle.extra["stopped"] = True
        return self.logs(handle)

    def _leader_reused(self, handle: ServerHandle) -> bool:
        # Only when the leader PID now belongs to another process and our group is gone.
        ct = handle.extra.get("create_time")
        try:
            p = psutil.Process(int(handle.extra["pid"]))
            return ct is not None and abs(p.create_time() - ct) > 0.5 and p.pid not in self._procs
        except psutil.Error:
            return False

    def _wait_group_gone(self, handle: ServerHandle, timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        delay = 0.02
        while self._group_alive(handle):
            if time.monotonic() >= end:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        return True


def _remove_tmp_dir(handle: ServerHandle) -> None:
    """Delete the server's private temp dir (sockets, scratch files) once its process group is gone."""
    tmp = handle.extra.get("tmp_dir")
    if tmp and Path(tmp).name.startswith(_TMP_PREFIX):
        shutil.rmtree(tmp, ignore_errors=True)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_members(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid:
                out.append(p)
        except (ProcessLookupError, PermissionError):
            continue
    return out


def record_ready(handle: ServerHandle, info: ReadyInfo) -> None:
    """Store what readiness learned on the handle (engine version, /version JSON, served models)."""
    handle.engine_version = info.version
    handle.extra["version_info"] = info.version_info
    handle.extra["served_models"] = info.models
    handle.extra["ready_after_s"] = round(info.waited_s, 3)
