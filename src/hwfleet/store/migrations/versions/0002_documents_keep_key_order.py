"""Documents sent on to the MES keep their key order on PostgreSQL (JSON, not JSONB).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

JSONB stores objects with its own key order, so a deviceScan document read back from
``scans.document`` / ``outbox.body`` went out as ``{pairInfo, scaninfo, operationid}``.
SQLite keeps JSON as text already: nothing to do there.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

COLUMNS = (("scans", "document"), ("scan_results", "entry"), ("outbox", "body"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE json USING {column}::json")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb")
