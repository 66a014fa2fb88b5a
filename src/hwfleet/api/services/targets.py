"""Targets as the API resolves them: one rule for every client (CLI, dashboard, graphs).

An expression is resolved over the stored fleet (enrolled and legacy devices, each
by the liveness rule) and the stored groups, in one read transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, status

from hwfleet.api.services.devices import DevicesService
from hwfleet.store.groups import GroupRepository
from hwfleet.targeting import Evaluator, StoredGroup, TargetError, parse, short_prefixes


def group_body(group: StoredGroup) -> dict[str, Any]:
    kind = "expr" if group.expr is not None else "static"
    return {"name": group.name, "kind": kind, "expr": group.expr, "members": list(group.members)}


def unprocessable(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


class TargetsService:
    """Resolve expressions; keep groups."""

    def __init__(self, devices: DevicesService) -> None:
        self.devices = devices
        self.store = devices.store

    async def _snapshot(self) -> tuple[list[dict[str, Any]], dict[str, StoredGroup]]:
        rows = await self.devices.list_devices(discovered=False)
        async with self.store.tx(readonly=True) as tx:
            groups = {g.name: g for g in await GroupRepository(tx.conn).list()}
        return rows, groups

    async def resolve(self, expr: str) -> list[dict[str, Any]]:
        """The devices ``expr`` selects, each with its ``short`` uuid prefix; 422 if it is bad."""
        rows, groups = await self._snapshot()
        try:
            selected = Evaluator(rows, groups.get).select(expr)
        except TargetError as exc:
            raise unprocessable(exc) from None
        prefixes = short_prefixes(r["uuid"] for r in rows)
        return [{**r, "short": prefixes[r["uuid"]]} for r in selected]

    async def resolve_uuids(self, expr: str) -> list[str]:
        return [r["uuid"] for r in await self.resolve(expr)]

    async def groups(self) -> list[dict[str, Any]]:
        _, groups = await self._snapshot()
        return [group_body(g) for g in groups.values()]

    async def group(self, name: str) -> dict[str, Any]:
        """The group and the devices it selects now."""
        rows, groups = await self._snapshot()
        group = groups.get(name)
        if group is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no group {name!r}")
        try:
            selected = Evaluator(rows, groups.get).select(f"G@{name}")
        except TargetError as exc:
            raise unprocessable(exc) from None
        return {**group_body(group), "devices": selected}

    async def put_group(self, name: str, expr: str | None, members: list[str]) -> dict[str, Any]:
        """Store a group. An expression must parse; static members are given as targets
        (uuids, prefixes, names…) and stored as the uuids they resolve to now."""
        if (expr is None) == (not members):
            raise unprocessable(ValueError("give either 'expr' or 'members', exactly one"))
        uuids: list[str] = []
        try:
            if expr is not None:
                parse(expr)
                rows, groups = await self._snapshot()
                Evaluator(rows, lambda n: None if n == name else groups.get(n)).select(expr)
            else:
                uuids = await self.resolve_uuids(",".join(_quoted(m) for m in members))
        except TargetError as exc:
            raise unprocessable(exc) from None
        async with self.store.tx() as tx:
            try:
                group = await GroupRepository(tx.conn).put(
                    name, expr=expr, members=uuids, at=datetime.now(UTC)
                )
            except ValueError as exc:
                raise unprocessable(exc) from None
        return group_body(group)

    async def remove_group(self, name: str) -> None:
        async with self.store.tx() as tx:
            if not await GroupRepository(tx.conn).remove(name):
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no group {name!r}")


def _quoted(member: str) -> str:
    return f"'{member}'" if "'" not in member else f'"{member}"'
