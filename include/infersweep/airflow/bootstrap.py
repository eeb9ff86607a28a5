"""Create or update the Airflow pools a sweep needs: one per runner label, slots = inventory nodes.

`dag.test()` ignores pools and the DagBag does not check them, so they must exist before the scheduler
sees a sweep; docker-compose's init service runs `infersweep airflow bootstrap`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from infersweep.config.inventory import Node

log = logging.getLogger(__name__)

POOL_PREFIX = "infersweep-"


def pool_name(runner: str) -> str:
    """Pool for a runner label; Airflow pool names allow ':' but keep them filesystem/URL friendly."""
    return POOL_PREFIX + runner.replace(":", "-").replace("/", "-")


def desired_pools(inventory: Mapping[str, Sequence[Node]]) -> dict[str, tuple[int, str]]:
    """pool name → (slots, description) for every runner label in the inventory."""
    return {
        pool_name(label): (len(nodes), f"infersweep: GPU nodes with runner label {label!r}")
        for label, nodes in sorted(inventory.items())
        if nodes
    }


def bootstrap_pools(inventory: Mapping[str, Sequence[Node]]) -> dict[str, int]:
    """Create/update pools in the Airflow metadata DB (needs a configured Airflow). Returns name → slots."""
    from airflow.models.pool import Pool

    wanted = desired_pools(inventory)
    for name, (slots, description) in wanted.items():
        Pool.create_or_update_pool(name=name, slots=slots, description=description, include_deferred=False)
        log.info("pool %s: %d slot(s)", name, slots)
    return {name: slots for name, (slots, _) in wanted.items()}
