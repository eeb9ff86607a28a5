"""Multinode serve groups: their worker pools on the group and on every result row.

- serve_groups.pools, benchmark_results.pools: the prefill/decode (or aggregated) pools of a multinode
  topology (role, num_worker, tp, ep, dp_attn, pp, dcp/pcp, runner, hardware); null for a single-node server.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    for table in ("serve_groups", "benchmark_results"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("pools", _json(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (Postgres; SQLite >= 3.35): batch mode would rebuild the table under its views.
    op.execute("ALTER TABLE benchmark_results DROP COLUMN pools")
    op.execute("ALTER TABLE serve_groups DROP COLUMN pools")
