"""Several schedulers: partitions of a run's graph with their leases, the scheduler registry,
attempts' heartbeats, schedules' cursors.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("partitions", sa.Integer, nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("cancel_requested", sa.Float))
    op.add_column("task_instances", sa.Column("partition", sa.Integer, nullable=False, server_default="0"))
    op.create_index("ix_instances_partition", "task_instances", ["run_id", "partition"])
    op.add_column("attempts", sa.Column("heartbeat", sa.Float))
    op.create_table(
        "partitions",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("needs", sa.Text, nullable=False, server_default="[]"),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200)),
        sa.Column("epoch", sa.Integer, nullable=False, server_default="0"),
        sa.Column("lease_expires", sa.Float),
        sa.Column("takeovers", sa.Integer, nullable=False, server_default="0"),
        sa.Column("taken_from", sa.String(200)),
        sa.Column("taken_at", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("ended_at", sa.Float),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("run_id", "number"),
    )
    op.create_index("ix_partitions_state", "partitions", ["state"])
    op.create_table(
        "schedulers",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("workers", sa.Integer, nullable=False, server_default="0"),
    )

    op.create_table(
        "schedules",
        sa.Column("pipeline", sa.String(400), primary_key=True),
        sa.Column("last_tick", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schedules")
    op.drop_table("schedulers")
    op.drop_table("partitions")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("heartbeat")
    op.drop_index("ix_instances_partition", "task_instances")
    with op.batch_alter_table("task_instances") as batch:
        batch.drop_column("partition")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("cancel_requested")
        batch.drop_column("partitions")
