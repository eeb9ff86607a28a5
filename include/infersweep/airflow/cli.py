"""CLI commands for infersweep.airflow (registered by infersweep.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach this package's commands to the top-level app."""
