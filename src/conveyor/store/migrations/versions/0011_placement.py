"""Batch engines: where an engine has each attempt (queued in Kueue, on node n1), and the
container image a run's attempts ran in.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("attempts", sa.Column("placement", sa.Text))
    op.add_column("runs", sa.Column("image", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("image")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("placement")
