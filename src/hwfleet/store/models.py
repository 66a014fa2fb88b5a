"""The tables (SQLAlchemy Core): what repositories query and what migrations must build.

Repositories use Core rather than the ORM: every hot path is one statement and
callers get msgspec records, so an identity map would be pure overhead.
``tests/integration/store`` checks that the migrated schema equals this metadata.
"""

from __future__ import annotations

import sqlalchemy as sa

from hwfleet.store.sqltypes import UTCDateTime, big_id, document_type, json_type

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("uuid", sa.String(64), primary_key=True),
    sa.Column("serial", json_type(), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("model_id", sa.String(255), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("ipaddr", sa.String(64), nullable=False),
    sa.Column("macs", json_type(), nullable=False),
    sa.Column("st_id", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("transport", sa.String(16), nullable=False),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
    # "agent" (enrolled) or "legacy" (a seed-000 reference device known by its serial only).
    sa.Column("kind", sa.String(16), nullable=False, server_default="agent"),
)

inventories = sa.Table(
    "inventories",
    metadata,
    sa.Column(
        "device_uuid",
        sa.String(64),
        sa.ForeignKey("devices.uuid", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("inventory", json_type(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    # No foreign key: a task's history outlives a device that is deleted or re-imaged.
    sa.Column("device_uuid", sa.String(64), nullable=False),
    sa.Column("method", sa.String(128), nullable=False),
    sa.Column("params", json_type(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("percent", sa.Float, nullable=True),
    sa.Column("eta", sa.Float, nullable=True),
    sa.Column("msg", sa.Text, nullable=True),
    sa.Column("result", json_type(nullable=True), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Index(None, "device_uuid", "state"),
    sa.Index(None, "state"),
    sa.Index(None, "created_at"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("routing_key", sa.String(255), nullable=False),
    sa.Column("device_uuid", sa.String(64), nullable=True),
    sa.Column("payload", json_type(), nullable=False),
    sa.Index(None, "device_uuid", "id"),
    # AUTOINCREMENT: never reuse an id, readers page through events with after_id.
    sqlite_autoincrement=True,
)

config = sa.Table(
    "config",
    metadata,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", json_type(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

scans = sa.Table(
    "scans",
    metadata,
    sa.Column("operationid", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("expected", json_type(), nullable=False),
    sa.Column("quiet_timeout", sa.Float, nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("last_activity", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("document", document_type(nullable=True), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index(None, "state"),
    sqlite_autoincrement=True,
)

scan_results = sa.Table(
    "scan_results",
    metadata,
    sa.Column(
        "operationid",
        sa.Integer,
        sa.ForeignKey("scans.operationid", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("device_uuid", sa.String(64), primary_key=True),
    sa.Column("sn", json_type(nullable=True), nullable=True),
    sa.Column("hwinfo", json_type(nullable=True), nullable=True),
    sa.Column("entry", document_type(nullable=True), nullable=True),
    sa.Column("result", sa.String(8), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("received_at", UTCDateTime(), nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("body", document_type(), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False, unique=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("lease_owner", sa.String(255), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Index(None, "state", "next_attempt_at"),
    sqlite_autoincrement=True,
)

agent_keys = sa.Table(
    "agent_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("device_uuid", sa.String(64), nullable=False),
    # Not unique: a key presented by a second device is recorded again, as "denied".
    sa.Column("fingerprint", sa.String(255), nullable=False),
    sa.Column("public_key_pem", sa.Text, nullable=False),
    sa.Column("cert_pem", sa.Text, nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.Index(None, "fingerprint"),
    sa.Index(None, "device_uuid"),
)

enrollment_tokens = sa.Table(
    "enrollment_tokens",
    metadata,
    sa.Column("token_hash", sa.String(255), primary_key=True),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("used_at", UTCDateTime(), nullable=True),
)

discovered = sa.Table(
    "discovered",
    metadata,
    sa.Column("uuid", sa.String(64), primary_key=True),
    sa.Column("metadata", json_type(), nullable=False),
    sa.Column("ipaddr", sa.String(64), nullable=False),
    sa.Column("spoofed", sa.Boolean, nullable=False),
    sa.Column("first_seen", UTCDateTime(), nullable=False),
    sa.Column("last_seen", UTCDateTime(), nullable=False),
)

# --- boot ---
# DHCP pins (reservations): Debian's Kea has no host_cmds hook, so hwfleet keeps them and
# writes them into Kea's configuration (docs/boot.md).
boot_pins = sa.Table(
    "boot_pins",
    metadata,
    sa.Column("mac", sa.String(17), primary_key=True),
    sa.Column("ip", sa.String(15), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)
