"""Device groups for target expressions (``G@rack1``): a stored expression or static members.

The table lives here, on the shared metadata, so that the migration check
(tests/integration/store/test_open.py) sees it like every other table.
Repositories are made per transaction: ``GroupRepository(tx.conn)``.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository
from hwfleet.store.models import metadata
from hwfleet.store.sqltypes import UTCDateTime, json_type


@dataclass(frozen=True, slots=True)
class StoredGroup:
    """A group as the store keeps it: an expression, or static member uuids."""

    name: str
    expr: str | None
    members: tuple[str, ...]


#: Group names: what fits after ``G@`` in an expression without quoting.
GROUP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

device_groups = sa.Table(
    "device_groups",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    # Exactly one of the two: an expression resolved at use, or a list of member uuids.
    sa.Column("expr", sa.Text, nullable=True),
    sa.Column("members", json_type(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)


def check_group_name(name: str) -> str:
    if not GROUP_NAME.match(name):
        raise ValueError(
            f"group name {name!r}: letters, digits, '_', '.', '-' (starting with a letter or "
            "digit), at most 128"
        )
    return name


def _to_group(row: AnyRow) -> StoredGroup:
    m = row._mapping
    return StoredGroup(name=m["name"], expr=m["expr"], members=tuple(m["members"]))


class GroupRepository(Repository):
    """Groups by name; ``put`` replaces a group of the same name."""

    __slots__ = ()

    async def put(
        self, name: str, *, expr: str | None, members: builtins.list[str], at: datetime
    ) -> StoredGroup:
        check_group_name(name)
        if (expr is None) == (not members):
            raise ValueError("a group is an expression or a list of members, exactly one")
        insert = self._insert(device_groups).values(
            name=name, expr=expr, members=list(members), created_at=at, updated_at=at
        )
        stmt = insert.on_conflict_do_update(
            index_elements=[device_groups.c.name],
            set_={"expr": expr, "members": list(members), "updated_at": at},
        ).returning(*device_groups.c)
        row = await self._row(stmt)
        assert row is not None
        return _to_group(row)

    async def get(self, name: str) -> StoredGroup | None:
        row = await self._row(sa.select(device_groups).where(device_groups.c.name == name))
        return None if row is None else _to_group(row)

    async def list(self) -> builtins.list[StoredGroup]:
        rows = await self._rows(sa.select(device_groups).order_by(device_groups.c.name))
        return [_to_group(row) for row in rows]

    async def remove(self, name: str) -> bool:
        rows = await self._rows(
            sa.delete(device_groups)
            .where(device_groups.c.name == name)
            .returning(device_groups.c.name)
        )
        return bool(rows)
