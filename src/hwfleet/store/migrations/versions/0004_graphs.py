"""Task graphs (DESIGN §11): definitions, graphs, their task rows and node SKUs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "graph_definitions",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("body", _json(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("name", "kind", name="pk_graph_definitions"),
    )
    op.create_table(
        "graphs",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("node", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("options", _json(), nullable=False),
        sa.Column("context", _json(), nullable=False),
        sa.Column("parent_task", sa.String(64), nullable=True),
        sa.Column("active_node", sa.String(64), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_graphs"),
        sa.UniqueConstraint("active_node", name="uq_graphs_active_node"),
    )
    op.create_index("ix_graphs_status", "graphs", ["status"])
    op.create_table(
        "graph_tasks",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("graph_id", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("spec", _json(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ready", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_until", _time(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("response", _json(), nullable=True),
        sa.Column("started_at", _time(), nullable=True),
        sa.Column("finished_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_graph_tasks"),
    )
    op.create_index("ix_graph_tasks_graph_id_position", "graph_tasks", ["graph_id", "position"])
    op.create_index("ix_graph_tasks_state_ready", "graph_tasks", ["state", "ready"])
    op.create_table(
        "node_skus",
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(200), nullable=False),
        sa.Column("assigned_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("node", name="pk_node_skus"),
    )


def downgrade() -> None:
    op.drop_table("node_skus")
    op.drop_table("graph_tasks")
    op.drop_table("graphs")
    op.drop_table("graph_definitions")
