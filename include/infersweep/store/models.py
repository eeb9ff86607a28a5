"""The results schema (SQLAlchemy 2 ORM). Alembic migrations in `store/migrations` create it.

Natural keys are UNIQUE so every write can be an idempotent upsert: a retried task or a replayed spool
record updates its row instead of adding a second one. Result rows carry their identity (recipe
fingerprint, image, engine version, config key, topology) so a row can be traced without joins, and an
`engine` column keeps simulated results apart from real ones.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

#: JSONB on Postgres (indexable, compact), JSON on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite stores naive text; we restore UTC on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        # SQLite compares datetimes as text: one fixed naive-UTC format keeps comparisons correct.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSONType, datetime: UTCDateTime}

    @classmethod
    def tbl(cls) -> Table:
        """The Core table (typed, for insert/update/select statements)."""
        table = cls.__table__
        assert isinstance(table, Table)
        return table


class _Stamped:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Run(_Stamped, Base):
    """One Airflow DAG run of a sweep."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("dag_id", "run_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dag_id: Mapped[str] = mapped_column(String(250))
    run_id: Mapped[str] = mapped_column(String(250))
    trigger_kind: Mapped[str] = mapped_column(String(20), doc="manual | scheduled | backfill | api | asset | test")
    logical_date: Mapped[datetime | None]
    config_key: Mapped[str | None] = mapped_column(String(250))
    image_tag: Mapped[str | None] = mapped_column(String(500))
    image_digest: Mapped[str | None] = mapped_column(String(100))
    engine: Mapped[str | None] = mapped_column(String(40), doc="sim | vllm-docker | vllm-process")
    engine_version: Mapped[str | None] = mapped_column(String(100))
    params: Mapped[dict[str, Any] | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20), default="running")
    not_executed: Mapped[dict[str, Any] | None] = mapped_column(
        JSONType, doc='work the run planned but does not execute yet: {"agentic-coding": {"jobs", "exp-names"}}')
    reused_from_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))


class ServeGroupRow(_Stamped, Base):
    """One serve group (one server boot) within a run."""

    __tablename__ = "serve_groups"
    __table_args__ = (UniqueConstraint("run_pk", "group_id"), Index(None, "recipe_fingerprint"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    group_id: Mapped[str] = mapped_column(String(100))
    config_key: Mapped[str] = mapped_column(String(250))
    model: Mapped[str | None] = mapped_column(String(500))
    model_prefix: Mapped[str | None] = mapped_column(String(100))
    precision: Mapped[str | None] = mapped_column(String(20))
    framework: Mapped[str | None] = mapped_column(String(40))
    runner: Mapped[str | None] = mapped_column(String(100))
    isl: Mapped[int | None]
    osl: Mapped[int | None]
    tp: Mapped[int | None]
    ep: Mapped[int | None]
    dp_attn: Mapped[bool | None]
    pp: Mapped[int | None]
    dcp_size: Mapped[int | None]
    pcp_size: Mapped[int | None]
    spec_decoding: Mapped[str | None] = mapped_column(String(40))
    router: Mapped[dict[str, Any] | None] = mapped_column(JSONType, doc="router/frontend {name, version}")
    kv_p2p_transfer: Mapped[str | None] = mapped_column(String(100))
    pools: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSONType, doc="multinode: the worker pools (role, num_worker, tp, ep, dp_attn, pp, runner, …); null single-node")
    max_model_len: Mapped[int | None]
    concs: Mapped[list[int] | None] = mapped_column(JSONType, doc="ascending")
    n_points: Mapped[int] = mapped_column(Integer, default=0, doc="planned points (len(concs)) for run summaries")
    eval_concs: Mapped[list[int] | None] = mapped_column(JSONType, doc="ascending")
    image: Mapped[str | None] = mapped_column(String(500))
    image_digest: Mapped[str | None] = mapped_column(String(100))
    engine: Mapped[str | None] = mapped_column(String(40))
    engine_version: Mapped[str | None] = mapped_column(String(100))
    recipe_fingerprint: Mapped[str | None] = mapped_column(String(64))
    recipe: Mapped[dict[str, Any] | None]
    node: Mapped[str | None] = mapped_column(String(200))
    memory_verdict: Mapped[dict[str, Any] | None]
    server: Mapped[dict[str, Any] | None] = mapped_column(
        JSONType, doc="the running server: {handle, node, lease}; cleared at teardown")
    model_load_s: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(20), default="planned")
    failure_kind: Mapped[str | None] = mapped_column(String(60))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    reused_from_group_pk: Mapped[int | None] = mapped_column(ForeignKey("serve_groups.id", ondelete="SET NULL"))


class Attempt(_Stamped, Base):
    """One Airflow task try, with the failure class that decided its retry."""

    __tablename__ = "attempts"
    __table_args__ = (UniqueConstraint("run_pk", "task_id", "map_index", "try_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    group_pk: Mapped[int | None] = mapped_column(ForeignKey("serve_groups.id", ondelete="CASCADE"))
    task_id: Mapped[str] = mapped_column(String(250))
    map_index: Mapped[int] = mapped_column(Integer, default=-1)
    try_number: Mapped[int] = mapped_column(Integer)
    node: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), doc="running | success | failed")
    failure_kind: Mapped[str | None] = mapped_column(String(60))
    transient: Mapped[bool | None]
    message: Mapped[str | None] = mapped_column(Text, doc="excerpt, capped")
    log_ref: Mapped[str | None] = mapped_column(String(1000))
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class _ResultIdentity:
    """Columns every result row carries so it is traceable on its own."""

    engine: Mapped[str] = mapped_column(String(40), doc="sim results never mix with real ones")
    config_key: Mapped[str | None] = mapped_column(String(250))
    image: Mapped[str | None] = mapped_column(String(500))
    image_digest: Mapped[str | None] = mapped_column(String(100))
    engine_version: Mapped[str | None] = mapped_column(String(100))
    recipe_fingerprint: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), doc="ok | failed")
    failure_kind: Mapped[str | None] = mapped_column(String(60))
    error: Mapped[str | None] = mapped_column(Text)
    measured_at: Mapped[datetime | None]
    reused_from_id: Mapped[int | None] = mapped_column(Integer, doc="source row id when copied (provenance)")
    reused_from_run_pk: Mapped[int | None] = mapped_column(Integer)


class BenchmarkResult(_ResultIdentity, _Stamped, Base):
    """One (isl, osl, conc) point of a serve group; a failed point is a row too."""

    __tablename__ = "benchmark_results"
    __table_args__ = (
        UniqueConstraint("run_pk", "group_pk", "isl", "osl", "conc"),
        Index("ix_benchmark_results_reuse", "recipe_fingerprint", "isl", "osl", "status"),
        Index("ix_benchmark_results_latest", "config_key", "isl", "osl", "conc"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    group_pk: Mapped[int] = mapped_column(ForeignKey("serve_groups.id", ondelete="CASCADE"))
    isl: Mapped[int]
    osl: Mapped[int]
    conc: Mapped[int]
    # Topology, denormalised from the serve group for the "latest per (config, topology, point)" view.
    model: Mapped[str | None] = mapped_column(String(500))
    model_prefix: Mapped[str | None] = mapped_column(String(100))
    precision: Mapped[str | None] = mapped_column(String(20))
    framework: Mapped[str | None] = mapped_column(String(40))
    runner: Mapped[str | None] = mapped_column(String(100))
    tp: Mapped[int | None]
    ep: Mapped[int | None]
    dp_attn: Mapped[bool | None]
    pp: Mapped[int | None]
    dcp_size: Mapped[int | None]
    pcp_size: Mapped[int | None]
    spec_decoding: Mapped[str | None] = mapped_column(String(40))
    router: Mapped[dict[str, Any] | None] = mapped_column(JSONType, doc="router/frontend {name, version}")
    kv_p2p_transfer: Mapped[str | None] = mapped_column(String(100))
    pools: Mapped[list[dict[str, Any]] | None] = mapped_column(
        JSONType, doc="multinode: the worker pools (role, num_worker, tp, ep, dp_attn, pp, runner, …); null single-node")
    gpus: Mapped[int | None]
    # Headline metrics (vLLM definitions; InferenceX per-GPU normalisation; interactivity = 1000/TPOT).
    tput_per_gpu: Mapped[float | None] = mapped_column(Float)
    output_tput_per_gpu: Mapped[float | None] = mapped_column(Float)
    input_tput_per_gpu: Mapped[float | None] = mapped_column(Float)
    median_ttft_ms: Mapped[float | None] = mapped_column(Float)
    p99_ttft_ms: Mapped[float | None] = mapped_column(Float)
    median_tpot_ms: Mapped[float | None] = mapped_column(Float)
    p99_tpot_ms: Mapped[float | None] = mapped_column(Float)
    median_intvty: Mapped[float | None] = mapped_column(Float)
    p99_intvty: Mapped[float | None] = mapped_column(Float)
    median_e2el_ms: Mapped[float | None] = mapped_column(Float)
    p99_e2el_ms: Mapped[float | None] = mapped_column(Float)
    num_completed: Mapped[int | None]
    num_failed: Mapped[int | None]
    client_bound: Mapped[bool] = mapped_column(Boolean, default=False)
    metrics: Mapped[dict[str, Any] | None]
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSONType, doc="the benchmark client's JSON, unchanged")
    intervals: Mapped[dict[str, Any] | None] = mapped_column(
        JSONType, doc='confidence intervals per headline metric: {"tput_per_gpu": {"lo", "hi", "level", "method", "n"}}')
    repeats: Mapped[list[Any] | None] = mapped_column(
        JSONType, doc="every repeat of a repeated point (`repeats: n`): [{repeat, metrics, raw}]; the row's "
                      "headline columns are their mean, `raw` the first repeat's JSON")


class PointDecision(_Stamped, Base):
    """Why a point (or a whole group, conc 0) was measured or skipped by a sweep policy (adaptive, SLO search).

    The reason is the sentence the run summary shows, e.g. "dominated by TP8 at conc 64 by >= 12%"; `detail`
    keeps the numbers behind it (bound, frontier value, tolerance) so the decision can be re-checked.
    """

    __tablename__ = "point_decisions"
    __table_args__ = (UniqueConstraint("run_pk", "group_pk", "isl", "osl", "conc", "policy"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    group_pk: Mapped[int] = mapped_column(ForeignKey("serve_groups.id", ondelete="CASCADE"))
    isl: Mapped[int]
    osl: Mapped[int]
    conc: Mapped[int] = mapped_column(Integer, doc="0 = the whole group")
    policy: Mapped[str] = mapped_column(String(20), doc="adaptive | slo")
    action: Mapped[str] = mapped_column(String(20), doc="measure | skip | skip-group")
    seq: Mapped[int] = mapped_column(Integer, default=0, doc="order of the decision within the group")
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None]


class EvalResult(_ResultIdentity, _Stamped, Base):
    """One eval (e.g. gsm8k) of a serve group at one concurrency."""

    __tablename__ = "eval_results"
    __table_args__ = (
        UniqueConstraint("run_pk", "group_pk", "task", "conc"),
        Index("ix_eval_results_reuse", "recipe_fingerprint", "task", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    group_pk: Mapped[int] = mapped_column(ForeignKey("serve_groups.id", ondelete="CASCADE"))
    task: Mapped[str] = mapped_column(String(60))
    conc: Mapped[int]
    isl: Mapped[int | None]
    osl: Mapped[int | None]
    n: Mapped[int | None]
    strict: Mapped[float | None] = mapped_column(Float, doc="exact_match, strict-match filter")
    flexible: Mapped[float | None] = mapped_column(Float, doc="exact_match, flexible-extract filter")
    strict_stderr: Mapped[float | None] = mapped_column(Float)
    flexible_stderr: Mapped[float | None] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    passed: Mapped[bool | None]
    metrics: Mapped[dict[str, Any] | None]
    raw: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class EvalSample(Base):
    """One scored eval question (lm-eval `--log_samples` equivalent)."""

    __tablename__ = "eval_samples"
    __table_args__ = (UniqueConstraint("eval_pk", "doc_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    eval_pk: Mapped[int] = mapped_column(ForeignKey("eval_results.id", ondelete="CASCADE"))
    doc_id: Mapped[int]
    target: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)
    strict_answer: Mapped[str | None] = mapped_column(String(200))
    flexible_answer: Mapped[str | None] = mapped_column(String(200))
    strict_correct: Mapped[bool | None]
    flexible_correct: Mapped[bool | None]
    data: Mapped[dict[str, Any] | None]


class ServerLog(_Stamped, Base):
    """A server's log, zlib-compressed, capped in size with an explicit truncation marker."""

    __tablename__ = "server_logs"
    __table_args__ = (UniqueConstraint("run_pk", "group_pk", "try_number", "source"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_pk: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    group_pk: Mapped[int] = mapped_column(ForeignKey("serve_groups.id", ondelete="CASCADE"))
    try_number: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[str] = mapped_column(String(40), default="server")
    node: Mapped[str | None] = mapped_column(String(200))
    codec: Mapped[str] = mapped_column(String(10), default="zlib")
    original_bytes: Mapped[int] = mapped_column(BigInteger)
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    sha256: Mapped[str] = mapped_column(String(64), doc="of the uncompressed original")
    content: Mapped[bytes] = mapped_column(LargeBinary)


class NodeRow(_Stamped, Base):
    """A GPU node from the inventory (registered/upserted by the lease code)."""

    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    runner: Mapped[str] = mapped_column(String(100), index=True)
    gpus: Mapped[int] = mapped_column(Integer, default=8)
    docker_url: Mapped[str | None] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    spec: Mapped[dict[str, Any] | None]


class NodeLeaseRow(Base):
    """A lease on a node. Rows are never deleted: the history proves no node was double-booked."""

    __tablename__ = "node_leases"
    __table_args__ = (
        # At most one active lease per node, enforced by the database itself (both dialects).
        Index(
            "uq_node_leases_active", "node", unique=True,
            postgresql_where=text("released_at IS NULL"), sqlite_where=text("released_at IS NULL"),
        ),
        Index(None, "expires_at"),
        Index(None, "set_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(ForeignKey("nodes.name"))
    runner: Mapped[str] = mapped_column(String(100))
    holder: Mapped[str] = mapped_column(String(500))
    holder_dag_id: Mapped[str | None] = mapped_column(String(250))
    holder_run_id: Mapped[str | None] = mapped_column(String(250))
    holder_group: Mapped[str | None] = mapped_column(String(100))
    holder_try: Mapped[int | None]
    token: Mapped[str] = mapped_column(String(36), unique=True)
    acquired_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    released_at: Mapped[datetime | None]
    release_reason: Mapped[str | None] = mapped_column(
        String(20), doc="released | expired | partial (the rest of a set that lost a member)")
    set_id: Mapped[str | None] = mapped_column(
        String(36), doc="shared by the leases taken together for one group (all or none); NULL before 0005")


class LeaseRequestRow(Base):
    """A lease request that could not be served yet: its place in the fair (FIFO) queue.

    One row per queue key (the holder without its try number, so a retried task keeps its place). The row is
    deleted when the request is served, and ignored (then deleted) once `expires_at` passes without a poll.
    """

    __tablename__ = "lease_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    queue_key: Mapped[str] = mapped_column(String(500), unique=True)
    holder: Mapped[str] = mapped_column(String(500), doc="the holder text of the latest poll")
    demand: Mapped[dict[str, Any]] = mapped_column(JSONType, doc='runner label -> nodes, e.g. {"h100": 2}')
    first_requested_at: Mapped[datetime]
    last_polled_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(doc="last poll + the waiter TTL; a dead waiter stops blocking")
    polls: Mapped[int] = mapped_column(Integer, default=1)
