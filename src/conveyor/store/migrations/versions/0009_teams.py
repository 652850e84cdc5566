"""People: users, their tokens, teams and their members, the audit; a run's team and creator.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("team", sa.String(100)))
    op.add_column("runs", sa.Column("created_by", sa.String(100)))
    op.create_index("ix_runs_team", "runs", ["team", "created_at"])
    op.create_table(
        "users",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("disabled_at", sa.Float),
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("user", sa.String(100), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(200), nullable=False, server_default=""),
        sa.Column("kind", sa.String(16), nullable=False, server_default="api"),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
        sa.UniqueConstraint("hash", name="ux_tokens_hash"),
    )
    op.create_index("ix_tokens_user", "tokens", ["user"])
    op.create_table(
        "teams",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("weight", sa.Float, nullable=False, server_default="1"),
        sa.Column("quota", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "memberships",
        sa.Column("team", sa.String(100), nullable=False),
        sa.Column("user", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("team", "user"),
    )
    op.create_index("ix_memberships_user", "memberships", ["user"])
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("team", sa.String(100)),
        sa.Column("target", sa.Text, nullable=False, server_default=""),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_audit_team", "audit", ["team", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_team", "audit")
    op.drop_table("audit")
    op.drop_index("ix_memberships_user", "memberships")
    op.drop_table("memberships")
    op.drop_table("teams")
    op.drop_index("ix_tokens_user", "tokens")
    op.drop_table("tokens")
    op.drop_table("users")
    op.drop_index("ix_runs_team", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("created_by")
        batch.drop_column("team")
