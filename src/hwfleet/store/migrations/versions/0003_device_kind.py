"""Devices have a kind: ``agent`` (an enrolled hwfleet agent) or ``legacy``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

A ``legacy`` device is one that never enrolled but answered a burn-in scan on
the broker: a device running seed 000's reference client (docs/scan.md). It is
known only by the serial it reports. Every existing row is an agent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="agent"))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("kind")
