"""Multi-node leases (all or none) and the fair lease queue.

- node_leases: `set_id`, shared by the leases taken together for one serve group, so heartbeat, release and
  expiry act on the whole set.
- lease_requests: requests that could not be served yet, oldest first; free nodes are earmarked for them
  before younger requests may take any (no starvation of multi-node groups).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("node_leases") as batch:
        batch.add_column(sa.Column("set_id", sa.String(length=36), nullable=True))
    op.create_index(op.f("ix_node_leases_set_id"), "node_leases", ["set_id"], unique=False)
    op.create_table(
        "lease_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("queue_key", sa.String(length=500), nullable=False),
        sa.Column("holder", sa.String(length=500), nullable=False),
        sa.Column("demand", _json(), nullable=False),
        sa.Column("first_requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_polled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("polls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lease_requests")),
        sa.UniqueConstraint("queue_key", name=op.f("uq_lease_requests_queue_key")),
    )


def downgrade() -> None:
    op.drop_table("lease_requests")
    op.drop_index(op.f("ix_node_leases_set_id"), table_name="node_leases")
    # Plain DROP COLUMN (Postgres; SQLite >= 3.35), as in 0004.
    op.execute("ALTER TABLE node_leases DROP COLUMN set_id")
