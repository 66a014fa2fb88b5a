"""Alembic environment: runs migrations on the connection :func:`hwfleet.store.migrate` hands in.

hwfleet migrates programmatically at ``open_store`` (no alembic.ini at runtime):
the caller opens a transaction, takes whatever lock its engine needs, and passes
the synchronous connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from hwfleet.store.models import metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "hwfleet migrations run from hwfleet.store.open_store(url), which supplies a connection"
        )
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


run()
