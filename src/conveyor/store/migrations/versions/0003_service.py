"""The service: schedules that can be paused, backfills kept in the store, runs listed by pipeline.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("schedules", sa.Column("paused_at", sa.Float))
    op.create_index("ix_runs_pipeline", "runs", ["pipeline", "created_at"])
    op.create_table(
        "backfills",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("pipeline", sa.String(200), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("every", sa.String(8), nullable=False),
        sa.Column("max_parallel", sa.Integer, nullable=False),
        sa.Column("workdir", sa.Text, nullable=False, server_default=""),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("version", sa.Integer, nullable=False, server_default="0"),
        sa.Column("slots", sa.Text, nullable=False),
    )
    op.create_index("ix_backfills_created", "backfills", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_backfills_created", "backfills")
    op.drop_table("backfills")
    op.drop_index("ix_runs_pipeline", "runs")
    with op.batch_alter_table("schedules") as batch:
        batch.drop_column("paused_at")
