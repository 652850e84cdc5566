"""The keys that sign the execution API's attempt tokens, shared by every server through the store.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signing_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_signing_keys_created", "signing_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_signing_keys_created", "signing_keys")
    op.drop_table("signing_keys")
