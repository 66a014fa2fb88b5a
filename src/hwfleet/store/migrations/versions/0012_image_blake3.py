"""Images: a blake3 digest beside the sha256 (agents verify with the faster hash).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

Nullable: images registered before this migration have no blake3, and agents check
them by their sha256 as before (hwfleet.images.digest.expected).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:  # batch: SQLite cannot drop columns
        batch.add_column(sa.Column("blake3", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_column("blake3")
