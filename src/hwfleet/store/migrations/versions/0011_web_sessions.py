"""Dashboard sessions in the store (docs/dashboard.md): hashed ids, last use.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

Sessions used to live in one controller's memory: a restart logged every browser out
and a second replica did not know them. Only a hash of each session id is stored.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_web_sessions"),
    )
    op.create_index("ix_web_sessions_last_used", "web_sessions", ["last_used"])


def downgrade() -> None:
    op.drop_index("ix_web_sessions_last_used", "web_sessions")
    op.drop_table("web_sessions")
