"""Column types that behave the same on SQLite and PostgreSQL.

SQLite has no timezone-aware timestamp: :class:`UTCDateTime` stores naive UTC
there (so text comparison orders correctly) and hands back aware UTC
datetimes on both engines. JSON is ``JSONB`` on PostgreSQL and ``JSON`` text on
SQLite; a serial kept in a JSON column keeps its type (1001 stays an int).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp; naive datetimes are refused, not guessed at."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware UTC time")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: store them all in one zone, without an offset.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type(*, nullable: bool = False) -> sa.types.TypeEngine[Any]:
    """JSON on SQLite, JSONB on PostgreSQL; ``nullable`` maps Python None to SQL NULL."""
    return sa.JSON(none_as_null=nullable).with_variant(
        postgresql.JSONB(none_as_null=nullable), "postgresql"
    )


def document_type(*, nullable: bool = False) -> sa.types.TypeEngine[Any]:
    """JSON kept as written on both engines, for documents we send on to others.

    JSONB reorders object keys; the seed-000 documents posted to the MES are read back
    from these columns and must keep their field order (``operationid``, ``pairInfo``,
    ``scaninfo``; ``macinfo``, ``sn``, ``result``).
    """
    return sa.JSON(none_as_null=nullable).with_variant(
        postgresql.JSON(none_as_null=nullable), "postgresql"
    )


def big_id() -> sa.types.TypeEngine[int]:
    """BIGINT on PostgreSQL; INTEGER on SQLite, where only that spelling aliases the rowid."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


_ENCODER = msgspec.json.Encoder()


def json_dumps(value: Any) -> str:
    """Serialise a JSON column value (msgspec: fast, and datetimes become ISO strings)."""
    return _ENCODER.encode(value).decode()


def json_loads(text: str | bytes) -> Any:
    return msgspec.json.decode(text)
