"""The engine interface: one way to start, probe and stop a server, wherever it runs.

Backends (simulated, local process, Docker) implement `Engine`; the DAG only sees this module.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from infersweep.config.inventory import Node
from infersweep.faults.errors import InfersweepError
from infersweep.recipes.model import Recipe


class EngineError(InfersweepError, RuntimeError):
    """A server failed to start, died, or could not be reached. `log_tail` quotes its last lines."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(message if not log_tail else f"{message}\n--- last log lines ---\n{log_tail}")
        self.log_tail = log_tail


@dataclass
class ServerHandle:
    """A started server. `id` is the PID (process) or container id (docker)."""

    base_url: str
    id: str
    log_path: str | None
    backend: str
    node: str | None = None
    engine_version: str | None = None
    image_digest: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Engine(abc.ABC):
    """Start/ready/logs/stop for one backend. Implementations must make `stop` idempotent."""

    name: str

    @abc.abstractmethod
    def start(self, recipe: Recipe, node: Node | None = None) -> ServerHandle:
        """Start the server and return at once (readiness is `wait_ready`)."""

    @abc.abstractmethod
    def wait_ready(self, handle: ServerHandle, deadline_s: float | None = None) -> None:
        """Poll /health then /v1/models until ready; fail fast if the server dies.

        Defaults to the recipe's ready timeout. Records `/version` (and the image digest) on the handle.
        """

    @abc.abstractmethod
    def is_alive(self, handle: ServerHandle) -> bool:
        """Whether the server's process or container is still running (not whether it answers HTTP)."""

    @abc.abstractmethod
    def logs(self, handle: ServerHandle, tail: int | None = None) -> str:
        """The server's log text (the last `tail` lines if given)."""

    @abc.abstractmethod
    def stop(self, handle: ServerHandle, grace_s: float = 30.0) -> str:
        """Collect logs, then TERM, wait `grace_s`, then KILL/remove. Safe twice and on half-started servers.

        Returns the collected log text.
        """
