"""Confidence intervals and repeats on benchmark points, and the decisions of adaptive / SLO sweeps.

- benchmark_results: `intervals` (per headline metric: lo, hi, level, method, n) and `repeats` (each
  repeat's metrics and raw JSON when a point is measured n times on one server).
- point_decisions: why a sweep policy measured or skipped each point (or a whole group, conc 0).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("benchmark_results") as batch:
        batch.add_column(sa.Column("intervals", _json(), nullable=True))
        batch.add_column(sa.Column("repeats", _json(), nullable=True))
    op.create_table(
        "point_decisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_pk", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("group_pk", sa.Integer(), sa.ForeignKey("serve_groups.id", ondelete="CASCADE"), nullable=False),
        sa.Column("isl", sa.Integer(), nullable=False),
        sa.Column("osl", sa.Integer(), nullable=False),
        sa.Column("conc", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=20), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", _json(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_pk", "group_pk", "isl", "osl", "conc", "policy"),
    )


def downgrade() -> None:
    op.drop_table("point_decisions")
    # Plain DROP COLUMN (Postgres; SQLite >= 3.35): batch mode would rebuild the table under its views.
    op.execute("ALTER TABLE benchmark_results DROP COLUMN repeats")
    op.execute("ALTER TABLE benchmark_results DROP COLUMN intervals")
