"""Upstream's newer fields on stored groups and points, and the work a run planned but did not execute.

- serve_groups, benchmark_results: `router` (name/version JSON) and `kv_p2p_transfer`, so a point keeps the
  components its server ran with; benchmark_results also gets `dcp_size` / `pcp_size` (its layout in full).
- runs: `not_executed`, e.g. {"agentic-coding": {"jobs": 12, "exp-names": [...]}} for the run summary.
- serve_groups: `server`, the group's running server (handle, node, lease), so a task retried on another
  worker finds it (it used to be a JSON file on the first worker's disk).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    for table in ("serve_groups", "benchmark_results"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("router", _json(), nullable=True))
            batch.add_column(sa.Column("kv_p2p_transfer", sa.String(length=100), nullable=True))
    with op.batch_alter_table("benchmark_results") as batch:
        batch.add_column(sa.Column("dcp_size", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("pcp_size", sa.Integer(), nullable=True))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("not_executed", _json(), nullable=True))
    with op.batch_alter_table("serve_groups") as batch:
        batch.add_column(sa.Column("server", _json(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (Postgres; SQLite >= 3.35): alembic's batch mode would rebuild the tables on SQLite,
    # which breaks the views that read them.
    for statement in ("ALTER TABLE serve_groups DROP COLUMN server",
                      "ALTER TABLE runs DROP COLUMN not_executed",
                      "ALTER TABLE benchmark_results DROP COLUMN pcp_size",
                      "ALTER TABLE benchmark_results DROP COLUMN dcp_size",
                      "ALTER TABLE benchmark_results DROP COLUMN kv_p2p_transfer",
                      "ALTER TABLE benchmark_results DROP COLUMN router",
                      "ALTER TABLE serve_groups DROP COLUMN kv_p2p_transfer",
                      "ALTER TABLE serve_groups DROP COLUMN router"):
        op.execute(statement)
