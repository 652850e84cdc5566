"""Team quotas: the ledger of holdings, the counters, the schedulers' waiting demands, the
reasons instances wait, and decayed usage (``conveyor.quotas``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_holdings",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("user", sa.String(100), nullable=False, server_default=""),
        sa.Column("amounts", sa.Text, nullable=False),
        sa.Column("borrowed", sa.Text, nullable=False, server_default="{}"),
        sa.Column("ledgers", sa.Text, nullable=False, server_default="[]"),
        sa.Column("scheduler", sa.String(200), nullable=False),
        sa.Column("taken_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "instance_id", "attempt"),
    )
    op.create_index("ix_quota_holdings_team", "quota_holdings", ["team"])
    op.create_table(
        "quota_use",
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("resource", sa.String(100), nullable=False),
        sa.Column("in_use", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("team", "resource"),
    )
    op.create_table(
        "quota_demands",
        sa.Column("scheduler", sa.String(200), nullable=False),
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("user", sa.String(100), nullable=False, server_default=""),
        sa.Column("waiting", sa.Integer, nullable=False),
        sa.Column("amounts", sa.Text, nullable=False),
        sa.Column("oldest", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("scheduler", "team", "user"),
    )
    op.create_table(
        "quota_waits",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "instance_id"),
    )
    op.create_table(
        "team_usage",
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("user", sa.String(100), nullable=False, server_default=""),
        sa.Column("usage", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("team", "user"),
    )


def downgrade() -> None:
    for table in ("team_usage", "quota_waits", "quota_demands", "quota_use", "quota_holdings"):
        op.drop_table(table)
