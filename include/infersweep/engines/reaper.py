"""Remove serving containers whose run has ended (crashed workers, killed tasks, missed teardowns).

The reaper only trusts labels it wrote (`infersweep.run_id` etc.) and asks a caller-supplied predicate
whether a run is still active, so the store or the node-lease code decides liveness, not Docker.
When the predicate cannot answer, the container is kept: killing a live benchmark is worse than a leak.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

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
