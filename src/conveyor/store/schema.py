"""The store's tables (SQLAlchemy Core). Alembic migrations create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

#: The Alembic revision this code expects; a test checks it is the migrations' head.
SCHEMA_REVISION = "0001"

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("pipeline", String(200), nullable=False),
    Column("target", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("key", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("workdir", Text, nullable=False, server_default=""),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("error", Text),
    Column("owner", String(200)),
    Column("epoch", Integer, nullable=False, server_default="0"),
    Column("lease_expires", Float),
    Column("total", Integer, nullable=False, server_default="0"),
    Index("ix_runs_key", "key"),
    Index("ix_runs_created", "created_at"),
)

task_instances = Table(
    "task_instances",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("id", String(32), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("task", String(200), nullable=False),
    Column("label", Text, nullable=False),
    Column("params", Text, nullable=False),
    Column("upstream", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("lost", Integer, nullable=False, server_default="0"),
    Column("not_before", Float, nullable=False, server_default="0"),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("targets", Text, nullable=False, server_default="[]"),
    Column("result", Text),
    Column("error", Text),
    Column("started_at", Float),
    Column("ended_at", Float),
    PrimaryKeyConstraint("run_id", "id"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("run_id", String(32), nullable=False),
    Column("instance_id", String(32), nullable=False),
    Column("number", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("error", Text),
    Column("log_path", Text),
    Column("worker", String(64)),
    PrimaryKeyConstraint("run_id", "instance_id", "number"),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), nullable=False),
    Column("instance_id", String(32), nullable=False),
    Column("old", String(16), nullable=False),
    Column("new", String(16), nullable=False),
    Column("at", Float, nullable=False),
    Column("cause", Text, nullable=False),
    Column("attempt", Integer, nullable=False),
    Index("ix_transitions_instance", "run_id", "instance_id"),
)
