"""Device groups for target expressions (``hwfleet groups``).

Revision ID: 0010
Revises: 0003
Create Date: 2026-12-03

A group is a stored expression (``name=rack1-*``) or a list of member uuids;
``G@name`` in a target expression selects it (docs/cli.md). Indexes on
``events.at`` and ``tasks.finished_at`` serve the retention pruner.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0008"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "device_groups",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("expr", sa.Text, nullable=True),
        sa.Column("members", _json(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_device_groups"),
    )
    # Retention prunes by age: without these, each run would read every event and task.
    op.create_index("ix_events_at", "events", ["at"])
    op.create_index("ix_tasks_finished_at", "tasks", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_finished_at", "tasks")
    op.drop_index("ix_events_at", "events")
    op.drop_table("device_groups")
