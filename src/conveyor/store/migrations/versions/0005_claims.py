"""One task instance at a time: claims of instance ids, one unfinished run per key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OPEN = sa.text("state IN ('pending', 'running')")


def upgrade() -> None:
    op.add_column("attempts", sa.Column("waited_for", sa.String(32)))
    op.create_table(
        "claims",
        sa.Column("instance_id", sa.String(32), primary_key=True),
        sa.Column("run_id", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),
        sa.Column("claimed_at", sa.Float, nullable=False),
        sa.Column("expires", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False, server_default="running"),
        sa.Column("result", sa.Text),
        sa.Column("ended_at", sa.Float),
    )
    # Older stores may hold several unfinished runs of one key: keep the newest open, mark the
    # others failed (they can still be retried by id), so the unique index can exist.
    op.execute(
        """
        UPDATE runs SET state = 'failed',
            error = 'superseded by a newer unfinished run of the same pipeline and parameters'
        WHERE state IN ('pending', 'running') AND EXISTS (
            SELECT 1 FROM runs AS newer
            WHERE newer.key = runs.key AND newer.state IN ('pending', 'running')
              AND (newer.created_at > runs.created_at
                   OR (newer.created_at = runs.created_at AND newer.id > runs.id))
        )
        """
    )
    op.create_index(
        "ux_runs_open_key", "runs", ["key"], unique=True, sqlite_where=OPEN, postgresql_where=OPEN
    )


def downgrade() -> None:
    op.drop_index("ux_runs_open_key", "runs")
    op.drop_table("claims")
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("waited_for")
