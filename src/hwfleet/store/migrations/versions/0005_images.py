"""The image registry (DESIGN §12): one row per uploaded disk image.

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-03

Column types are spelled out here, as in 0001: a migration must not change when
models change.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("source_format", sa.String(16), nullable=False),
        sa.Column("disk_size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
    )
    op.create_index(op.f("ix_images_name"), "images", ["name"])


def downgrade() -> None:
    op.drop_index(op.f("ix_images_name"), table_name="images")
    op.drop_table("images")
