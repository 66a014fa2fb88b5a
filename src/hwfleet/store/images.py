"""The image registry's table (DESIGN §12): one row per uploaded disk image.

The bytes live in the controller's data dir (``images/<id>.img``); the row says
what they are. ``format`` is what is served (``raw``, ``raw.gz``, ``raw.zst``),
``source_format`` what was uploaded (a ``qcow2`` is converted to ``raw`` at
upload, since an agent cannot stream one onto a disk), and ``disk_size`` the
size of the disk the image becomes once decompressed, so an agent refuses a
device that is too small before it writes a byte. ``sha256`` and ``blake3`` are
digests of the served bytes (agents check with blake3 when it is there:
:mod:`hwfleet.images.digest`).
"""

from __future__ import annotations

import secrets
from datetime import datetime

import msgspec
import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository
from hwfleet.store.models import metadata
from hwfleet.store.sqltypes import UTCDateTime

images = sa.Table(
    "images",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("format", sa.String(16), nullable=False),
    sa.Column("source_format", sa.String(16), nullable=False),
    sa.Column("disk_size", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # Added by migration 0012: images registered before it have none (checked by sha256).
    sa.Column("blake3", sa.String(64), nullable=True),
    sa.Index(None, "name"),
)


class ImageRecord(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    name: str
    sha256: str
    size: int
    format: str
    source_format: str
    disk_size: int
    created_at: datetime
    #: None for an image registered before blake3 was recorded (migration 0012).
    blake3: str | None = None


def new_image_id() -> str:
    """12 random hex digits, like key ids: short enough to type.

    Always starting with a letter: ``hwfleet run … --param image=ID`` reads a value as JSON
    when it can, and ``123456789012`` or ``12e345678901`` would become a number.
    """
    while not (candidate := secrets.token_hex(6))[0].isalpha():
        pass
    return candidate


def _record(row: AnyRow) -> ImageRecord:
    return ImageRecord(**dict(row._mapping))


class ImageRepository(Repository):
    """``tx.images``."""

    __slots__ = ()

    async def add(self, record: ImageRecord) -> ImageRecord:
        await self._conn.execute(sa.insert(images).values(**msgspec.structs.asdict(record)))
        return record

    async def get(self, image_id: str) -> ImageRecord | None:
        row = await self._row(sa.select(images).where(images.c.id == image_id))
        return None if row is None else _record(row)

    async def list(self) -> list[ImageRecord]:
        rows = await self._rows(sa.select(images).order_by(images.c.created_at, images.c.id))
        return [_record(r) for r in rows]

    async def delete(self, image_id: str) -> bool:
        result = await self._conn.execute(sa.delete(images).where(images.c.id == image_id))
        return bool(result.rowcount)
