"""Reproducibility: what each run ran with (its commit, diff, Python, platform, environment),
each task instance's inputs' fingerprints and cache key, and the result cache.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_provenance",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("diff_hash", sa.String(64)),
        sa.Column("diff", sa.Text),
        sa.Column("python", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(200), nullable=False),
        sa.Column("env_hash", sa.String(64), nullable=False),
        sa.Column("env_kind", sa.String(32), nullable=False),
        sa.Column("source_date_epoch", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "instance_provenance",
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("inputs", sa.Text, nullable=False, server_default="[]"),
        sa.Column("cache_key", sa.String(64)),
        sa.Column("reused_from", sa.String(32)),
        sa.PrimaryKeyConstraint("run_id", "instance_id"),
    )
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("instance_id", sa.String(32), nullable=False),
        sa.Column("result", sa.Text),
        sa.Column("outputs", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("cache_entries", "instance_provenance", "run_provenance"):
        op.drop_table(table)
