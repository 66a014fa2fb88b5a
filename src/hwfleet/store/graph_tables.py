"""The task-graph tables (DESIGN §11), on the shared metadata so the migration check sees them.

Each graph and each of its tasks is a row: the store is the truth and a controller
that restarts reads where it was from here. ``graphs.active_node`` holds the target
while a graph is active and NULL after, and is unique: one active graph per node is
a constraint of the database, not a check that two replicas could race past.
"""

from __future__ import annotations

import sqlalchemy as sa

from hwfleet.store.models import metadata
from hwfleet.store.sqltypes import UTCDateTime, json_type

graph_definitions = sa.Table(
    "graph_definitions",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    # "graph", "task" or "sku": one namespace each, as RackHD keeps them.
    sa.Column("kind", sa.String(8), primary_key=True),
    sa.Column("body", json_type(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

graphs = sa.Table(
    "graphs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("node", sa.String(64), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("options", json_type(), nullable=False),
    sa.Column("context", json_type(), nullable=False),
    sa.Column("parent_task", sa.String(64), nullable=True),
    sa.Column("active_node", sa.String(64), nullable=True, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Index(None, "status"),
)

graph_tasks = sa.Table(
    "graph_tasks",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("graph_id", sa.String(64), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    # The resolved definition: implementsTask, merged options, waitOn, retries, timeout.
    sa.Column("spec", json_type(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("ready", sa.Boolean, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("lease_owner", sa.String(128), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("result", json_type(nullable=True), nullable=True),
    # RackHD's bootstrap pair: what a node posted to respondCommands for this task.
    sa.Column("response", json_type(nullable=True), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Index(None, "graph_id", "position"),
    sa.Index(None, "state", "ready"),
)

node_skus = sa.Table(
    "node_skus",
    metadata,
    sa.Column("node", sa.String(64), primary_key=True),
    sa.Column("sku", sa.String(200), nullable=False),
    sa.Column("assigned_at", UTCDateTime(), nullable=False),
)
