"""Agent keys and the operator's decisions about them (DESIGN §6: pending → accepted, …)."""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hwfleet.store.base import AnyRow, Repository, check_state
from hwfleet.store.models import agent_keys
from hwfleet.store.records import KEY_STATES, KeyRecord


def to_key(row: AnyRow) -> KeyRecord:
    m = row._mapping
    return KeyRecord(
        id=m["id"],
        device_uuid=m["device_uuid"],
        fingerprint=m["fingerprint"],
        public_key_pem=m["public_key_pem"],
        cert_pem=m["cert_pem"],
        state=m["state"],
        source=m["source"],
        reason=m["reason"],
        created_at=m["created_at"],
        decided_at=m["decided_at"],
    )


def new_key_id() -> str:
    """12 random hex digits: short enough to type in ``hwfleet keys accept ID``."""
    return secrets.token_hex(6)


class KeyRepository(Repository):
    """``tx.keys``."""

    __slots__ = ()

    async def add(
        self,
        *,
        device_uuid: str,
        fingerprint: str,
        public_key_pem: str,
        state: str,
        source: str,
        at: datetime,
        key_id: str | None = None,
        reason: str | None = None,
    ) -> KeyRecord:
        """Record a key; ``decided_at`` is set unless the key is ``pending``."""
        check_state(state, KEY_STATES, "key")
        if not fingerprint:
            raise ValueError("a key needs a fingerprint")
        stmt = (
            sa.insert(agent_keys)
            .values(
                id=key_id or new_key_id(),
                device_uuid=device_uuid,
                fingerprint=fingerprint,
                public_key_pem=public_key_pem,
                state=state,
                source=source,
                reason=reason,
                created_at=at,
                decided_at=None if state == "pending" else at,
            )
            .returning(*agent_keys.c)
        )
        row = await self._row(stmt)
        assert row is not None
        return to_key(row)

    async def add_many(self, records: builtins.list[KeyRecord]) -> None:
        """Insert whole key rows in one statement (a batch of enrollments, issue 18)."""
        if not records:
            return
        for record in records:
            check_state(record.state, KEY_STATES, "key")
        await self._conn.execute(
            sa.insert(agent_keys),
            [
                {
                    "id": r.id,
                    "device_uuid": r.device_uuid,
                    "fingerprint": r.fingerprint,
                    "public_key_pem": r.public_key_pem,
                    "cert_pem": r.cert_pem,
                    "state": r.state,
                    "source": r.source,
                    "reason": r.reason,
                    "created_at": r.created_at,
                    "decided_at": r.decided_at,
                }
                for r in records
            ],
        )

    async def matching(
        self, fingerprints: builtins.list[str], device_uuids: builtins.list[str]
    ) -> builtins.list[KeyRecord]:
        """Keys with one of these fingerprints or of one of these devices, oldest first."""
        if not fingerprints and not device_uuids:
            return []
        stmt = (
            sa.select(agent_keys)
            .where(
                sa.or_(
                    agent_keys.c.fingerprint.in_(fingerprints),
                    agent_keys.c.device_uuid.in_(device_uuids),
                )
            )
            .order_by(agent_keys.c.created_at, agent_keys.c.id)
        )
        return [to_key(row) for row in await self._rows(stmt)]

    async def get(self, key_id: str) -> KeyRecord | None:
        row = await self._row(sa.select(agent_keys).where(agent_keys.c.id == key_id))
        return None if row is None else to_key(row)

    async def by_fingerprint(self, fp: str) -> KeyRecord | None:
        """The newest key with this fingerprint."""
        stmt = (
            sa.select(agent_keys)
            .where(agent_keys.c.fingerprint == fp)
            .order_by(agent_keys.c.created_at.desc(), agent_keys.c.id.desc())
            .limit(1)
        )
        row = await self._row(stmt)
        return None if row is None else to_key(row)

    async def owners_if_accepted(self, fps: builtins.list[str]) -> dict[str, str]:
        """For each fingerprint whose newest key is accepted: the uuid that key belongs to.

        One query for a whole batch of connecting devices (what ``by_fingerprint`` and a
        state check answer one at a time)."""
        stmt = (
            sa.select(agent_keys.c.fingerprint, agent_keys.c.device_uuid, agent_keys.c.state)
            .where(agent_keys.c.fingerprint.in_(fps))
            .order_by(agent_keys.c.created_at, agent_keys.c.id)
        )
        newest = {row.fingerprint: row for row in await self._rows(stmt)}  # the last wins
        return {fp: row.device_uuid for fp, row in newest.items() if row.state == "accepted"}

    async def for_device(self, device_uuid: str) -> list[KeyRecord]:
        """Oldest first."""
        stmt = (
            sa.select(agent_keys)
            .where(agent_keys.c.device_uuid == device_uuid)
            .order_by(agent_keys.c.created_at, agent_keys.c.id)
        )
        return [to_key(row) for row in await self._rows(stmt)]

    async def for_devices(self, device_uuids: Sequence[str]) -> builtins.list[KeyRecord]:
        """The keys of these devices, oldest first (one query)."""
        if not device_uuids:
            return []
        stmt = (
            sa.select(agent_keys)
            .where(agent_keys.c.device_uuid.in_(list(device_uuids)))
            .order_by(agent_keys.c.created_at, agent_keys.c.id)
        )
        return [to_key(row) for row in await self._rows(stmt)]

    async def set_state(
        self,
        key_id: str,
        state: str,
        *,
        reason: str | None = None,
        cert_pem: str | None = None,
        at: datetime,
    ) -> KeyRecord | None:
        """Decide on a key; ``reason``/``cert_pem`` replace the old ones only when given."""
        check_state(state, KEY_STATES, "key")
        values: dict[str, Any] = {"state": state, "decided_at": at}
        if reason is not None:
            values["reason"] = reason
        if cert_pem is not None:
            values["cert_pem"] = cert_pem
        stmt = (
            sa.update(agent_keys)
            .where(agent_keys.c.id == key_id)
            .values(values)
            .returning(*agent_keys.c)
        )
        row = await self._row(stmt)
        return None if row is None else to_key(row)

    async def count_devices(self, state: str) -> int:
        """How many device uuids have at least one key in ``state``."""
        check_state(state, KEY_STATES, "key")
        stmt = sa.select(sa.func.count(sa.distinct(agent_keys.c.device_uuid))).where(
            agent_keys.c.state == state
        )
        return int((await self._conn.execute(stmt)).scalar_one())

    async def list(self) -> builtins.list[KeyRecord]:
        stmt = sa.select(agent_keys).order_by(agent_keys.c.created_at, agent_keys.c.id)
        return [to_key(row) for row in await self._rows(stmt)]

    async def delete(self, key_id: str) -> bool:
        stmt = sa.delete(agent_keys).where(agent_keys.c.id == key_id).returning(agent_keys.c.id)
        return await self._row(stmt) is not None
