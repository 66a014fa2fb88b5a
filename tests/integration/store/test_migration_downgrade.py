"""Migrations go down as well as up, on both engines, keeping the rows they do not drop.

0012 (the images' ``blake3`` column) is dropped with ``batch_alter_table``: on SQLite that
copies the table, on PostgreSQL it is a plain ``ALTER TABLE … DROP COLUMN`` — two different
code paths, so the round trip runs on each.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import command

from hwfleet.store import open_store
from hwfleet.store.images import images
from hwfleet.store.migrate import alembic_config, current_revision, head_revision, upgrade

IMAGE = {
    "id": "img-1",
    "name": "debian",
    "sha256": "a" * 64,
    "size": 1024,
    "format": "raw",
    "source_format": "raw",
    "disk_size": 1024,
    "blake3": "b" * 64,
}


def _downgrade(conn: sa.Connection, revision: str) -> None:
    command.downgrade(alembic_config(conn), revision)


def _image_columns(conn: sa.Connection) -> set[str]:
    return {column["name"] for column in sa.inspect(conn).get_columns("images")}


async def test_0012_goes_down_and_up_keeping_the_images(db_url: str, now: datetime) -> None:
    store = await open_store(db_url)
    try:
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(images).values(**IMAGE, created_at=now))

        async with store.engine.begin() as conn:
            await conn.run_sync(_downgrade, "0011")
        assert await current_revision(store.engine) == "0011"
        async with store.engine.connect() as conn:
            assert "blake3" not in await conn.run_sync(_image_columns)
            rows = (await conn.exec_driver_sql("SELECT id, sha256, size FROM images")).all()
        assert [tuple(row) for row in rows] == [("img-1", "a" * 64, 1024)]

        await upgrade(store.engine)
        assert await current_revision(store.engine) == head_revision()
        async with store.engine.connect() as conn:
            row = (await conn.execute(sa.select(images))).one()
        # The digest went with the column: the image is checked by its sha256 again.
        assert (row.id, row.sha256, row.blake3) == ("img-1", "a" * 64, None)
    finally:
        await store.close()
