"""DHCP pins for the boot services: one address per MAC, one MAC per address.

Revision ID: 0007
Revises: 0003
Create Date: 2026-12-03

Column types are spelled out (a migration is a frozen record of the schema).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "boot_pins",
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("ip", sa.String(15), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("mac", name=op.f("pk_boot_pins")),
        sa.UniqueConstraint("ip", name=op.f("uq_boot_pins_ip")),
    )


def downgrade() -> None:
    op.drop_table("boot_pins")
