"""Run summary: the DAG's group statuses `done` and `reused` count as green groups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_GREEN_OLD = "('success', 'skipped')"
_GREEN_NEW = "('success', 'done', 'reused', 'skipped')"
# v_run_summary as created by 0001, with the set of green group statuses as a placeholder.
_RUN_SUMMARY = """
SELECT r.id AS run_pk, r.dag_id, r.run_id, r.trigger_kind, r.logical_date, r.config_key, r.engine,
  r.image_tag, r.image_digest, r.engine_version, r.status, r.started_at, r.finished_at,
  r.reused_from_run_id,
  COALESCE(g.groups_total, 0) AS groups_total, COALESCE(g.groups_ok, 0) AS groups_ok,
  COALESCE(g.groups_failed, 0) AS groups_failed,
  CASE WHEN COALESCE(g.points_planned, 0) > COALESCE(p.points_recorded, 0)
       THEN COALESCE(g.points_planned, 0) ELSE COALESCE(p.points_recorded, 0) END AS points_total,
  COALESCE(p.points_ok, 0) AS points_ok, COALESCE(p.points_failed, 0) AS points_failed,
  COALESCE(p.points_reused, 0) AS points_reused,
  COALESCE(e.evals_total, 0) AS evals_total, COALESCE(e.evals_passed, 0) AS evals_passed,
  COALESCE(e.evals_failed, 0) AS evals_failed
FROM runs r
LEFT JOIN (
  SELECT run_pk, COUNT(*) AS groups_total,
    SUM(CASE WHEN status IN GREEN_STATUSES THEN 1 ELSE 0 END) AS groups_ok,
    SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS groups_failed,
    SUM(n_points) AS points_planned
  FROM serve_groups GROUP BY run_pk) g ON g.run_pk = r.id
LEFT JOIN (
  SELECT run_pk, COUNT(*) AS points_recorded,
    SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS points_ok,
    SUM(CASE WHEN status <> 'ok' THEN 1 ELSE 0 END) AS points_failed,
    SUM(CASE WHEN reused_from_id IS NOT NULL THEN 1 ELSE 0 END) AS points_reused
  FROM benchmark_results GROUP BY run_pk) p ON p.run_pk = r.id
LEFT JOIN (
  SELECT run_pk, COUNT(*) AS evals_total,
    SUM(CASE WHEN status = 'ok' AND passed THEN 1 ELSE 0 END) AS evals_passed,
    SUM(CASE WHEN status <> 'ok' OR NOT passed THEN 1 ELSE 0 END) AS evals_failed
  FROM eval_results GROUP BY run_pk) e ON e.run_pk = r.id"""


def _replace(green: str) -> None:
    # CREATE OR REPLACE VIEW is Postgres-only; drop + create works on both dialects.
    op.execute("DROP VIEW IF EXISTS v_run_summary")
    op.execute("CREATE VIEW v_run_summary AS " + _RUN_SUMMARY.replace("GREEN_STATUSES", green))


def upgrade() -> None:
    _replace(_GREEN_NEW)


def downgrade() -> None:
    _replace(_GREEN_OLD)
