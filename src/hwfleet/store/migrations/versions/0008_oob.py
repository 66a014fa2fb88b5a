"""Out-of-band management: BMC records (sealed credentials) and pollers.

Revision ID: 0008
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from hwfleet.store.sqltypes import UTCDateTime, big_id, json_type

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bmcs",
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("driver", sa.String(32), nullable=False),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("node", name=op.f("pk_bmcs")),
    )
    op.create_table(
        "pollers",
        sa.Column("id", big_id(), autoincrement=True, nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("interval", sa.Float, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("rules", json_type(), nullable=False),
        sa.Column("next_run_at", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("last_data", json_type(nullable=True), nullable=True),
        sa.Column("last_polled_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pollers")),
        sa.UniqueConstraint("node", "type", name=op.f("uq_pollers_node_type")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_pollers_next_run_at"), "pollers", ["next_run_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_pollers_next_run_at"), table_name="pollers")
    op.drop_table("pollers")
    op.drop_table("bmcs")
