"""Remove servers whose run or lease has ended (crashed workers, killed tasks, missed teardowns).

Containers: the reaper only trusts labels it wrote (`infersweep.run_id` etc.) and asks a caller-supplied
predicate whether a run is still active, so the store or the node-lease code decides liveness, not Docker.
Local servers (sim, `vllm serve` process groups): each start is recorded in a per-host registry with its
lease token, PID, start time and an environment marker; once the lease has ended, the marked processes are
stopped. When a predicate cannot answer, the server is kept: killing a live benchmark is worse than a leak.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infersweep.config.inventory import Node
from infersweep.engines.docker import LABEL_NODE, LABEL_RUN_ID, LABEL_SERVE_GROUP

if TYPE_CHECKING:
    import docker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReapedContainer:
    """One container the reaper acted on (or would have, in a dry run)."""

    id: str
    name: str
    run_id: str
    serve_group: str
    node: str
    status: str
    removed: bool
    error: str | None = None


def find_orphans(
    client: docker.DockerClient,
    is_run_active: Callable[[str], bool],
    *,
    node: str | None = None,
) -> list[dict[str, str]]:
    """Containers labelled `infersweep.run_id` whose run `is_run_active` reports as ended.

    `node` limits the search to containers this node label owns (several nodes may share one engine).
    """
    filters: dict[str, list[str]] = {"label": [LABEL_RUN_ID]}
    if node is not None:
        filters["label"].append(f"{LABEL_NODE}={node}")
    orphans: list[dict[str, str]] = []
    for summary in client.api.containers(all=True, filters=filters):
        labels = summary.get("Labels") or {}
        run_id = labels.get(LABEL_RUN_ID, "")
        try:
            active = bool(is_run_active(run_id))
        except Exception as exc:
            log.warning("reaper: cannot tell whether run %r is active (%s); keeping its container", run_id, exc)
            continue
        if active:
            continue
        names = summary.get("Names") or [""]
        orphans.append({
            "id": str(summary["Id"]),
            "name": str(names[0]).lstrip("/"),
            "run_id": run_id,
            "serve_group": labels.get(LABEL_SERVE_GROUP, ""),
            "node": labels.get(LABEL_NODE, ""),
            "status": str(summary.get("State", "")),
        })
    return orphans


def reap(
    client: docker.DockerClient,
    is_run_active: Callable[[str], bool],
    *,
    node: str | None = None,
    grace_s: float = 10.0,
    dry_run: bool = False,
) -> list[ReapedContainer]:
    """Stop (with `grace_s`) and remove every orphaned infersweep container; return what was done.

    Errors on one container are recorded and do not stop the sweep over the others.
    """
    import docker.errors

    done: list[ReapedContainer] = []
    for o in find_orphans(client, is_run_active, node=node):
        error: str | None = None
        removed = False
        if not dry_run:
            try:
                if o["status"] in {"running", "restarting", "paused"}:
                    client.api.stop(o["id"], timeout=max(int(grace_s), 0))
                client.api.remove_container(o["id"], force=True, v=True)
                removed = True
            except docker.errors.NotFound:
                removed = True  # someone else (its own teardown) won the race
            except docker.errors.APIError as exc:
                error = str(exc)
                log.warning("reaper: could not remove %s (%s): %s", o["name"], o["id"][:12], exc)
        log.info("reaper: %s %s (run %s, group %s)", "removed" if removed else "found", o["name"],
                 o["run_id"], o["serve_group"])
        done.append(ReapedContainer(removed=removed, error=error, **o))
    return done


def reap_node(
    node: Node,
    is_run_active: Callable[[str], bool],
    *,
    client_timeout_s: float = 60.0,
    grace_s: float = 10.0,
    dry_run: bool = False,
) -> list[ReapedContainer]:
    """`reap` on one inventory node's Docker engine (its `docker_url`, else DOCKER_HOST), own client."""
    import docker

    client = (docker.DockerClient(base_url=node.docker_url, timeout=int(client_timeout_s)) if node.docker_url
              else docker.from_env(timeout=int(client_timeout_s)))
    try:
        return reap(client, is_run_active, node=node.name, grace_s=grace_s, dry_run=dry_run)
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------------------
# Local servers (simulated engine, `vllm serve` process groups): no Docker labels, so each start is recorded
# in a per-host registry and the server process carries a unique marker in its environment.

#: Environment variable set in every local server started by the chain; its value is the registry id.
SERVER_MARKER_ENV = "INFERSWEEP_SERVER_ID"
#: Seconds a recorded and a live process start time may differ and still be the same process.
_CREATE_TIME_SLACK_S = 1.0


@dataclass(frozen=True)
class LocalServer:
    """One local server as recorded when it started: whose lease it runs under and how to recognise it.

    A PID alone is not an identity (PIDs are reused), so the reaper also requires the host, the boot time,
    the leader's start time and the marker variable in the process environment before it sends a signal.
    """

    server_id: str
    lease_token: str
    lease_id: int
    node: str
    holder: str
    pid: int
    pgid: int
    create_time: float | None
    host: str
    boot_time: float
    started_at: float
    log_path: str | None = None

    @classmethod
    def from_pid(cls, *, server_id: str, lease_token: str, lease_id: int, node: str, holder: str, pid: int,
                 pgid: int | None = None, create_time: float | None = None,
                 log_path: str | None = None) -> LocalServer:
        """A record for a server started just now on this host."""
        import psutil

        return cls(server_id=server_id, lease_token=lease_token, lease_id=lease_id, node=node, holder=holder,
                   pid=pid, pgid=pgid if pgid is not None else pid, create_time=create_time,
                   host=socket.gethostname(), boot_time=psutil.boot_time(), started_at=time.time(),
                   log_path=log_path)


@dataclass(frozen=True)
class ReapedServer:
    """One local server the reaper acted on: the processes it signalled and whether they are gone."""

    server_id: str
    holder: str
    node: str
    lease_id: int
    pids: tuple[int, ...]
    removed: bool
    error: str | None = None


class ServerRegistry:
    """`<dir>/<server_id>.json`, one file per local server start (written atomically)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def add(self, server: LocalServer) -> Path:
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"{server.server_id}.json"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(server)))
        os.replace(tmp, target)
        return target

    def remove(self, server_id: str) -> None:
        (self.path / f"{server_id}.json").unlink(missing_ok=True)

    def all(self) -> list[LocalServer]:
        """Every readable record (a half-written or foreign file is skipped with a warning)."""
        out: list[LocalServer] = []
        for f in sorted(self.path.glob("*.json")) if self.path.is_dir() else []:
            try:
                out.append(LocalServer(**json.loads(f.read_text())))
            except (OSError, ValueError, TypeError) as exc:
                log.warning("reaper: skipping unreadable server record %s: %s", f, exc)
        return out


def _same_boot(server: LocalServer) -> bool:
    import psutil

    return server.host == socket.gethostname() and abs(server.boot_time - psutil.boot_time()) < 2.0


def marked_processes(server: LocalServer) -> list[Any]:
    """Live processes of this host that belong to `server`: the marker in their environment equals its id.

    Children inherit the marker, so workers a server forked (even into another process group) are found; a
    process with the server's old PID but another start time (PID reuse) or no marker is never returned.
    """
    import psutil

    if not _same_boot(server):
        return []
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.pid == server.pid and server.create_time is not None \
                    and abs(p.create_time() - server.create_time) > _CREATE_TIME_SLACK_S:
                continue  # the PID now belongs to another process
            if p.environ().get(SERVER_MARKER_ENV) != server.server_id:
                continue
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _still_alive(procs: list[Any]) -> list[Any]:
    """Those of `procs` still alive (zombies count as gone: their parent may never reap them)."""
    import psutil

    alive = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            continue
    return alive


def _terminate(procs: list[Any], grace_s: float) -> list[Any]:
    """TERM, wait up to `grace_s`, KILL the rest, wait 10 s; returns the survivors."""
    import psutil

    for sig_kill, wait_s in ((False, grace_s), (True, 10.0)):
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                (p.kill if sig_kill else p.terminate)()  # psutil checks the PID still names this process
        deadline = time.monotonic() + wait_s
        while (procs := _still_alive(procs)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not procs:
            break
    return procs


def reap_local(
    registry: ServerRegistry,
    is_lease_active: Callable[[str], bool | None],
    *,
    grace_s: float = 10.0,
    dry_run: bool = False,
) -> list[ReapedServer]:
    """Stop the local servers of this host whose lease has ended (their task died or missed its teardown).

    `is_lease_active(token)` answers True (keep), False (reap) or None (unknown: keep, as for containers).
    Records whose lease has ended and whose processes are gone are deleted; records of other hosts or of a
    previous boot are never acted on here (a previous boot's are deleted: their processes cannot exist).
    """
    done: list[ReapedServer] = []
    for server in registry.all():
        if server.host != socket.gethostname():
            continue
        try:
            active = is_lease_active(server.lease_token)
        except Exception as exc:
            log.warning("reaper: cannot tell whether lease %s is active (%s); keeping server %s",
                        server.lease_id, exc, server.server_id)
            continue
        if active is None or active:
            continue
        procs = marked_processes(server)
        if not procs:
            if not dry_run:
                registry.remove(server.server_id)
            continue
        pids = tuple(sorted(p.pid for p in procs))
        if dry_run:
            done.append(ReapedServer(server.server_id, server.holder, server.node, server.lease_id, pids, False))
            continue
        survivors = _terminate(procs, grace_s)
        error = f"processes {[p.pid for p in survivors]} survived SIGKILL" if survivors else None
        if not survivors:
            registry.remove(server.server_id)
        log.warning("reaper: %s orphan server %s of %s on %s (lease %s, pids %s)",
                    "stopped" if not survivors else "could not stop", server.server_id, server.holder,
                    server.node, server.lease_id, list(pids))
        done.append(ReapedServer(server.server_id, server.holder, server.node, server.lease_id, pids,
                                 not survivors, error))
    return done
