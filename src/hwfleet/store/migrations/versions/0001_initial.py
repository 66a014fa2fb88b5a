"""Initial schema: devices, inventories, tasks, events, config, scans, outbox, keys, tokens.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Column types are spelled out here rather than imported from models.py: a
migration is a frozen record of the schema at its revision.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("uuid", sa.String(64), nullable=False),
        sa.Column("serial", _json(), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("model_id", sa.String(255), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("ipaddr", sa.String(64), nullable=False),
        sa.Column("macs", _json(), nullable=False),
        sa.Column("st_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("transport", sa.String(16), nullable=False),
        sa.Column("first_seen", _time(), nullable=False),
        sa.Column("last_seen", _time(), nullable=False),
        sa.PrimaryKeyConstraint("uuid", name="pk_devices"),
    )
    op.create_table(
        "inventories",
        sa.Column("device_uuid", sa.String(64), nullable=False),
        sa.Column("inventory", _json(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(
            ["device_uuid"],
            ["devices.uuid"],
            name="fk_inventories_device_uuid_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("device_uuid", name="pk_inventories"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("device_uuid", sa.String(64), nullable=False),
        sa.Column("method", sa.String(128), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("percent", sa.Float(), nullable=True),
        sa.Column("eta", sa.Float(), nullable=True),
        sa.Column("msg", sa.Text(), nullable=True),
        sa.Column("result", _json(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
    )
    op.create_index("ix_tasks_device_uuid_state", "tasks", ["device_uuid", "state"])
    op.create_index("ix_tasks_state", "tasks", ["state"])
    op.create_index("ix_tasks_created_at", "tasks", ["created_at"])
    op.create_table(
        "events",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.Column("routing_key", sa.String(255), nullable=False),
        sa.Column("device_uuid", sa.String(64), nullable=True),
        sa.Column("payload", _json(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_device_uuid_id", "events", ["device_uuid", "id"])
    op.create_table(
        "config",
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", _json(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_config"),
    )
    op.create_table(
        "scans",
        sa.Column("operationid", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expected", _json(), nullable=False),
        sa.Column("quiet_timeout", sa.Float(), nullable=False),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("last_activity", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.Column("document", _json(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("operationid", name="pk_scans"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_scans_state", "scans", ["state"])
    op.create_table(
        "scan_results",
        sa.Column("operationid", sa.Integer(), nullable=False),
        sa.Column("device_uuid", sa.String(64), nullable=False),
        sa.Column("sn", _json(), nullable=True),
        sa.Column("hwinfo", _json(), nullable=True),
        sa.Column("entry", _json(), nullable=True),
        sa.Column("result", sa.String(8), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("received_at", _time(), nullable=False),
        sa.ForeignKeyConstraint(
            ["operationid"],
            ["scans.operationid"],
            name="fk_scan_results_operationid_scans",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("operationid", "device_uuid", name="pk_scan_results"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("body", _json(), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", _time(), nullable=False),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_until", _time(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("delivered_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_idempotency_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_outbox_state_next_attempt_at", "outbox", ["state", "next_attempt_at"])
    op.create_table(
        "agent_keys",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("device_uuid", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(255), nullable=False),
        sa.Column("public_key_pem", sa.Text(), nullable=False),
        sa.Column("cert_pem", sa.Text(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("decided_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_agent_keys"),
    )
    op.create_index("ix_agent_keys_fingerprint", "agent_keys", ["fingerprint"])
    op.create_index("ix_agent_keys_device_uuid", "agent_keys", ["device_uuid"])
    op.create_table(
        "enrollment_tokens",
        sa.Column("token_hash", sa.String(255), nullable=False),
        sa.Column("expires_at", _time(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("used_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_enrollment_tokens"),
    )
    op.create_table(
        "discovered",
        sa.Column("uuid", sa.String(64), nullable=False),
        sa.Column("metadata", _json(), nullable=False),
        sa.Column("ipaddr", sa.String(64), nullable=False),
        sa.Column("spoofed", sa.Boolean(), nullable=False),
        sa.Column("first_seen", _time(), nullable=False),
        sa.Column("last_seen", _time(), nullable=False),
        sa.PrimaryKeyConstraint("uuid", name="pk_discovered"),
    )


def downgrade() -> None:
    for table in (
        "discovered",
        "enrollment_tokens",
        "agent_keys",
        "outbox",
        "scan_results",
        "scans",
        "config",
        "events",
        "tasks",
        "inventories",
        "devices",
    ):
        op.drop_table(table)
