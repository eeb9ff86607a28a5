"""Initial results schema: runs, serve groups, attempts, results, evals, logs, node leases, and views.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-28 02:06:57.414808
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Views are plain SQL that both SQLite (>= 3.25, window functions) and Postgres accept.
# Result columns that a report needs, without the bulky JSON (raw client output stays in the table).
_RESULT_COLS = """br.id, br.run_pk, br.group_pk, br.engine, br.config_key, br.image, br.image_digest,
  br.engine_version, br.recipe_fingerprint, br.status, br.failure_kind, br.error, br.measured_at,
  br.reused_from_id, br.reused_from_run_pk, br.isl, br.osl, br.conc, br.model, br.model_prefix,
  br.precision, br.framework, br.runner, br.tp, br.ep, br.dp_attn, br.pp, br.spec_decoding, br.gpus,
  br.tput_per_gpu, br.output_tput_per_gpu, br.input_tput_per_gpu, br.median_ttft_ms, br.p99_ttft_ms,
  br.median_tpot_ms, br.p99_tpot_ms, br.median_intvty, br.p99_intvty, br.median_e2el_ms, br.p99_e2el_ms,
  br.num_completed, br.num_failed, br.client_bound"""

VIEWS = {
    # Newest successful point per (engine kind, config, topology, isl, osl, conc): InferenceX's
    # `latest_benchmarks`, with the engine kind in the key so simulated results never shadow real ones.
    "v_latest_results": f"""
SELECT * FROM (
  SELECT {_RESULT_COLS}, r.dag_id, r.run_id, r.trigger_kind, r.logical_date,
    ROW_NUMBER() OVER (
      PARTITION BY br.engine, br.config_key, br.model, br.precision, br.framework, br.runner, br.tp, br.ep,
                   br.dp_attn, br.pp, br.spec_decoding, br.isl, br.osl, br.conc
      ORDER BY br.measured_at DESC, br.id DESC) AS recency
  FROM benchmark_results br JOIN runs r ON r.id = br.run_pk
  WHERE br.status = 'ok'
) ranked WHERE recency = 1""",  # noqa: S608 (constant column list, no input)
    # One row per run: "53/55 green". Planned points count even when a group never produced rows
    # (e.g. it failed at serve), so a dead group cannot make a run look green.
    "v_run_summary": """
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
    SUM(CASE WHEN status IN ('success', 'skipped') THEN 1 ELSE 0 END) AS groups_ok,
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
  FROM eval_results GROUP BY run_pk) e ON e.run_pk = r.id""",
    # Failures by class per run, from points, evals and task attempts.
    "v_failure_breakdown": """
SELECT f.run_pk, r.dag_id, r.run_id, f.source, f.failure_kind, COUNT(*) AS n
FROM (
  SELECT run_pk, 'point' AS source, COALESCE(failure_kind, 'unknown') AS failure_kind
    FROM benchmark_results WHERE status <> 'ok'
  UNION ALL
  SELECT run_pk, 'eval' AS source, COALESCE(failure_kind, 'accuracy_below_threshold') AS failure_kind
    FROM eval_results WHERE status <> 'ok' OR NOT passed
  UNION ALL
  SELECT run_pk, 'attempt' AS source, COALESCE(failure_kind, 'unknown') AS failure_kind
    FROM attempts WHERE status = 'failed'
) f JOIN runs r ON r.id = f.run_pk
GROUP BY f.run_pk, r.dag_id, r.run_id, f.source, f.failure_kind""",
}


def upgrade() -> None:
    op.create_table('nodes',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('runner', sa.String(length=100), nullable=False),
    sa.Column('gpus', sa.Integer(), nullable=False),
    sa.Column('docker_url', sa.String(length=500), nullable=True),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('spec', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_nodes'))
    )
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nodes_runner'), ['runner'], unique=False)

    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dag_id', sa.String(length=250), nullable=False),
    sa.Column('run_id', sa.String(length=250), nullable=False),
    sa.Column('trigger_kind', sa.String(length=20), nullable=False),
    sa.Column('logical_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('config_key', sa.String(length=250), nullable=True),
    sa.Column('image_tag', sa.String(length=500), nullable=True),
    sa.Column('image_digest', sa.String(length=100), nullable=True),
    sa.Column('engine', sa.String(length=40), nullable=True),
    sa.Column('engine_version', sa.String(length=100), nullable=True),
    sa.Column('params', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('reused_from_run_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['reused_from_run_id'], ['runs.id'], name=op.f('fk_runs_reused_from_run_id_runs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs')),
    sa.UniqueConstraint('dag_id', 'run_id', name=op.f('uq_runs_dag_id_run_id'))
    )
    op.create_table('node_leases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=200), nullable=False),
    sa.Column('runner', sa.String(length=100), nullable=False),
    sa.Column('holder', sa.String(length=500), nullable=False),
    sa.Column('holder_dag_id', sa.String(length=250), nullable=True),
    sa.Column('holder_run_id', sa.String(length=250), nullable=True),
    sa.Column('holder_group', sa.String(length=100), nullable=True),
    sa.Column('holder_try', sa.Integer(), nullable=True),
    sa.Column('token', sa.String(length=36), nullable=False),
    sa.Column('acquired_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('release_reason', sa.String(length=20), nullable=True),
    sa.ForeignKeyConstraint(['node'], ['nodes.name'], name=op.f('fk_node_leases_node_nodes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_node_leases')),
    sa.UniqueConstraint('token', name=op.f('uq_node_leases_token'))
    )
    with op.batch_alter_table('node_leases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_node_leases_expires_at'), ['expires_at'], unique=False)
        batch_op.create_index('uq_node_leases_active', ['node'], unique=True, postgresql_where=sa.text('released_at IS NULL'), sqlite_where=sa.text('released_at IS NULL'))

    op.create_table('serve_groups',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_pk', sa.Integer(), nullable=False),
    sa.Column('group_id', sa.String(length=100), nullable=False),
    sa.Column('config_key', sa.String(length=250), nullable=False),
    sa.Column('model', sa.String(length=500), nullable=True),
    sa.Column('model_prefix', sa.String(length=100), nullable=True),
    sa.Column('precision', sa.String(length=20), nullable=True),
    sa.Column('framework', sa.String(length=40), nullable=True),
    sa.Column('runner', sa.String(length=100), nullable=True),
    sa.Column('isl', sa.Integer(), nullable=True),
    sa.Column('osl', sa.Integer(), nullable=True),
    sa.Column('tp', sa.Integer(), nullable=True),
    sa.Column('ep', sa.Integer(), nullable=True),
    sa.Column('dp_attn', sa.Boolean(), nullable=True),
    sa.Column('pp', sa.Integer(), nullable=True),
    sa.Column('dcp_size', sa.Integer(), nullable=True),
    sa.Column('pcp_size', sa.Integer(), nullable=True),
    sa.Column('spec_decoding', sa.String(length=40), nullable=True),
    sa.Column('max_model_len', sa.Integer(), nullable=True),
    sa.Column('concs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('n_points', sa.Integer(), nullable=False),
    sa.Column('eval_concs', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('image', sa.String(length=500), nullable=True),
    sa.Column('image_digest', sa.String(length=100), nullable=True),
    sa.Column('engine', sa.String(length=40), nullable=True),
    sa.Column('engine_version', sa.String(length=100), nullable=True),
    sa.Column('recipe_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('recipe', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('node', sa.String(length=200), nullable=True),
    sa.Column('memory_verdict', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('model_load_s', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('failure_kind', sa.String(length=60), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reused_from_group_pk', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['reused_from_group_pk'], ['serve_groups.id'], name=op.f('fk_serve_groups_reused_from_group_pk_serve_groups'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['run_pk'], ['runs.id'], name=op.f('fk_serve_groups_run_pk_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_serve_groups')),
    sa.UniqueConstraint('run_pk', 'group_id', name=op.f('uq_serve_groups_run_pk_group_id'))
    )
    with op.batch_alter_table('serve_groups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_serve_groups_recipe_fingerprint'), ['recipe_fingerprint'], unique=False)

    op.create_table('attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_pk', sa.Integer(), nullable=False),
    sa.Column('group_pk', sa.Integer(), nullable=True),
    sa.Column('task_id', sa.String(length=250), nullable=False),
    sa.Column('map_index', sa.Integer(), nullable=False),
    sa.Column('try_number', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=200), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('failure_kind', sa.String(length=60), nullable=True),
    sa.Column('transient', sa.Boolean(), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('log_ref', sa.String(length=1000), nullable=True),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_pk'], ['serve_groups.id'], name=op.f('fk_attempts_group_pk_serve_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_pk'], ['runs.id'], name=op.f('fk_attempts_run_pk_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attempts')),
    sa.UniqueConstraint('run_pk', 'task_id', 'map_index', 'try_number', name=op.f('uq_attempts_run_pk_task_id_map_index_try_number'))
    )
    op.create_table('benchmark_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_pk', sa.Integer(), nullable=False),
    sa.Column('group_pk', sa.Integer(), nullable=False),
    sa.Column('isl', sa.Integer(), nullable=False),
    sa.Column('osl', sa.Integer(), nullable=False),
    sa.Column('conc', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=500), nullable=True),
    sa.Column('model_prefix', sa.String(length=100), nullable=True),
    sa.Column('precision', sa.String(length=20), nullable=True),
    sa.Column('framework', sa.String(length=40), nullable=True),
    sa.Column('runner', sa.String(length=100), nullable=True),
    sa.Column('tp', sa.Integer(), nullable=True),
    sa.Column('ep', sa.Integer(), nullable=True),
    sa.Column('dp_attn', sa.Boolean(), nullable=True),
    sa.Column('pp', sa.Integer(), nullable=True),
    sa.Column('spec_decoding', sa.String(length=40), nullable=True),
    sa.Column('gpus', sa.Integer(), nullable=True),
    sa.Column('tput_per_gpu', sa.Float(), nullable=True),
    sa.Column('output_tput_per_gpu', sa.Float(), nullable=True),
    sa.Column('input_tput_per_gpu', sa.Float(), nullable=True),
    sa.Column('median_ttft_ms', sa.Float(), nullable=True),
    sa.Column('p99_ttft_ms', sa.Float(), nullable=True),
    sa.Column('median_tpot_ms', sa.Float(), nullable=True),
    sa.Column('p99_tpot_ms', sa.Float(), nullable=True),
    sa.Column('median_intvty', sa.Float(), nullable=True),
    sa.Column('p99_intvty', sa.Float(), nullable=True),
    sa.Column('median_e2el_ms', sa.Float(), nullable=True),
    sa.Column('p99_e2el_ms', sa.Float(), nullable=True),
    sa.Column('num_completed', sa.Integer(), nullable=True),
    sa.Column('num_failed', sa.Integer(), nullable=True),
    sa.Column('client_bound', sa.Boolean(), nullable=False),
    sa.Column('metrics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('engine', sa.String(length=40), nullable=False),
    sa.Column('config_key', sa.String(length=250), nullable=True),
    sa.Column('image', sa.String(length=500), nullable=True),
    sa.Column('image_digest', sa.String(length=100), nullable=True),
    sa.Column('engine_version', sa.String(length=100), nullable=True),
    sa.Column('recipe_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('failure_kind', sa.String(length=60), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('measured_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reused_from_id', sa.Integer(), nullable=True),
    sa.Column('reused_from_run_pk', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_pk'], ['serve_groups.id'], name=op.f('fk_benchmark_results_group_pk_serve_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_pk'], ['runs.id'], name=op.f('fk_benchmark_results_run_pk_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_benchmark_results')),
    sa.UniqueConstraint('run_pk', 'group_pk', 'isl', 'osl', 'conc', name=op.f('uq_benchmark_results_run_pk_group_pk_isl_osl_conc'))
    )
    with op.batch_alter_table('benchmark_results', schema=None) as batch_op:
        batch_op.create_index('ix_benchmark_results_latest', ['config_key', 'isl', 'osl', 'conc'], unique=False)
        batch_op.create_index('ix_benchmark_results_reuse', ['recipe_fingerprint', 'isl', 'osl', 'status'], unique=False)

    op.create_table('eval_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_pk', sa.Integer(), nullable=False),
    sa.Column('group_pk', sa.Integer(), nullable=False),
    sa.Column('task', sa.String(length=60), nullable=False),
    sa.Column('conc', sa.Integer(), nullable=False),
    sa.Column('isl', sa.Integer(), nullable=True),
    sa.Column('osl', sa.Integer(), nullable=True),
    sa.Column('n', sa.Integer(), nullable=True),
    sa.Column('strict', sa.Float(), nullable=True),
    sa.Column('flexible', sa.Float(), nullable=True),
    sa.Column('strict_stderr', sa.Float(), nullable=True),
    sa.Column('flexible_stderr', sa.Float(), nullable=True),
    sa.Column('threshold', sa.Float(), nullable=True),
    sa.Column('passed', sa.Boolean(), nullable=True),
    sa.Column('metrics', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.Column('engine', sa.String(length=40), nullable=False),
    sa.Column('config_key', sa.String(length=250), nullable=True),
    sa.Column('image', sa.String(length=500), nullable=True),
    sa.Column('image_digest', sa.String(length=100), nullable=True),
    sa.Column('engine_version', sa.String(length=100), nullable=True),
    sa.Column('recipe_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('failure_kind', sa.String(length=60), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('measured_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reused_from_id', sa.Integer(), nullable=True),
    sa.Column('reused_from_run_pk', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_pk'], ['serve_groups.id'], name=op.f('fk_eval_results_group_pk_serve_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_pk'], ['runs.id'], name=op.f('fk_eval_results_run_pk_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eval_results')),
    sa.UniqueConstraint('run_pk', 'group_pk', 'task', 'conc', name=op.f('uq_eval_results_run_pk_group_pk_task_conc'))
    )
    with op.batch_alter_table('eval_results', schema=None) as batch_op:
        batch_op.create_index('ix_eval_results_reuse', ['recipe_fingerprint', 'task', 'status'], unique=False)

    op.create_table('server_logs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_pk', sa.Integer(), nullable=False),
    sa.Column('group_pk', sa.Integer(), nullable=False),
    sa.Column('try_number', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=40), nullable=False),
    sa.Column('node', sa.String(length=200), nullable=True),
    sa.Column('codec', sa.String(length=10), nullable=False),
    sa.Column('original_bytes', sa.BigInteger(), nullable=False),
    sa.Column('stored_bytes', sa.BigInteger(), nullable=False),
    sa.Column('truncated', sa.Boolean(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['group_pk'], ['serve_groups.id'], name=op.f('fk_server_logs_group_pk_serve_groups'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_pk'], ['runs.id'], name=op.f('fk_server_logs_run_pk_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_server_logs')),
    sa.UniqueConstraint('run_pk', 'group_pk', 'try_number', 'source', name=op.f('uq_server_logs_run_pk_group_pk_try_number_source'))
    )
    op.create_table('eval_samples',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('eval_pk', sa.Integer(), nullable=False),
    sa.Column('doc_id', sa.Integer(), nullable=False),
    sa.Column('target', sa.Text(), nullable=True),
    sa.Column('response', sa.Text(), nullable=True),
    sa.Column('strict_answer', sa.String(length=200), nullable=True),
    sa.Column('flexible_answer', sa.String(length=200), nullable=True),
    sa.Column('strict_correct', sa.Boolean(), nullable=True),
    sa.Column('flexible_correct', sa.Boolean(), nullable=True),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=True),
    sa.ForeignKeyConstraint(['eval_pk'], ['eval_results.id'], name=op.f('fk_eval_samples_eval_pk_eval_results'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eval_samples')),
    sa.UniqueConstraint('eval_pk', 'doc_id', name=op.f('uq_eval_samples_eval_pk_doc_id'))
    )


    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")

def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('eval_samples')
    op.drop_table('server_logs')
    with op.batch_alter_table('eval_results', schema=None) as batch_op:
        batch_op.drop_index('ix_eval_results_reuse')

    op.drop_table('eval_results')
    with op.batch_alter_table('benchmark_results', schema=None) as batch_op:
        batch_op.drop_index('ix_benchmark_results_reuse')
        batch_op.drop_index('ix_benchmark_results_latest')

    op.drop_table('benchmark_results')
    op.drop_table('attempts')
    with op.batch_alter_table('serve_groups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_serve_groups_recipe_fingerprint'))

    op.drop_table('serve_groups')
    with op.batch_alter_table('node_leases', schema=None) as batch_op:
        batch_op.drop_index('uq_node_leases_active', postgresql_where=sa.text('released_at IS NULL'), sqlite_where=sa.text('released_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_node_leases_expires_at'))

    op.drop_table('node_leases')
    op.drop_table('runs')
    with op.batch_alter_table('nodes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nodes_runner'))

    op.drop_table('nodes')

