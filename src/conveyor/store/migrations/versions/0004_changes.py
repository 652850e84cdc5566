"""The web UI: a run's transitions by id, to read what changed after a cursor.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_transitions_run", "transitions", ["run_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_transitions_run", "transitions")
