"""Connected devices: sessions by uuid, presence from heartbeats, calls and ping-all.

The database holds what is known about a device; this registry holds who is
connected right now and how to reach them, whatever the carrier.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hwfleet.bus.topology import EventKey
from hwfleet.controller.events import EventPublisher, utcnow
from hwfleet.protocol import methods
from hwfleet.protocol.errors import CallTimeout, RemoteError, SessionClosed
from hwfleet.protocol.session import Session

if TYPE_CHECKING:
    from hwfleet.store import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Connection:
    """One live device session."""

    uuid: str
    session: Session[Any]
    transport: str
    ipaddr: str
    handshake: methods.Handshake
    connected_at: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    #: Called to drop the carrier (close the socket / cancel the consumer).
    drop: Callable[[], None] = lambda: None


class DeviceRegistry:
    """Who is online, with presence kept from heartbeats and flushed to the store in bulk."""

    def __init__(
        self, store: Store, events: EventPublisher, *, offline_after: float, call_timeout: float
    ) -> None:
        self._store = store
        self._events = events
        self._offline_after = offline_after
        self._call_timeout = call_timeout
        self._connections: dict[str, Connection] = {}
        self._seen: set[str] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._attach_hooks: list[Callable[[Connection], None]] = []

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        async with self._store.tx() as tx:
            await tx.devices.mark_all_offline(utcnow())
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="presence-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for conn in list(self._connections.values()):
            conn.session.close()
            conn.drop()
        await self._flush_seen()

    # -- attach / detach -------------------------------------------------------
    def on_attach(self, hook: Callable[[Connection], None]) -> None:
        """Call ``hook(conn)`` after each device attaches (it must not block: start a task)."""
        self._attach_hooks.append(hook)

    async def attach(self, conn: Connection) -> None:
        hs = conn.handshake
        previous = self._connections.get(conn.uuid)
        if previous is not None and previous.session is not conn.session:
            # The same device reconnected (its old TCP may be half-open): the new one wins.
            previous.session.close(SessionClosed("replaced by a newer connection"))
            previous.drop()
        self._connections[conn.uuid] = conn
        async with self._store.tx() as tx:
            await tx.devices.upsert(
                conn.uuid,
                serial=hs.serial,
                name=hs.name,
                model_id=hs.model_id,
                version=hs.version,
                macs=hs.macs,
                ipaddr=conn.ipaddr,
                st_id=hs.st_id,
                transport=conn.transport,
                online=True,
                at=utcnow(),
            )
        await self._events.emit(
            EventKey.device_online(conn.uuid),
            {
                "uuid": conn.uuid,
                "serial": hs.serial,
                "name": hs.name,
                "ipaddr": conn.ipaddr,
                "transport": conn.transport,
            },
            device_uuid=conn.uuid,
        )
        for hook in self._attach_hooks:
            try:
                hook(conn)
            except Exception:  # a hook's bug must not refuse the device
                log.exception("attach hook %r failed for %s", hook, conn.uuid)

    async def detach(self, uuid: str, session: Session[Any], reason: str) -> None:
        conn = self._connections.get(uuid)
        if conn is None or conn.session is not session:
            return  # already replaced by a newer connection
        del self._connections[uuid]
        # Through Store.write: a shutdown cancels connection handlers, often right here.
        now = utcnow()
        await self._store.write(lambda tx: tx.devices.set_online(uuid, False, now))
        await self._events.emit(
            EventKey.device_offline(uuid), {"uuid": uuid, "reason": reason}, device_uuid=uuid
        )

    def drop(self, uuid: str, reason: str) -> bool:
        """Disconnect a device now (revoked key, operator action)."""
        conn = self._connections.get(uuid)
        if conn is None:
            return False
        conn.session.close(SessionClosed(reason))
        conn.drop()
        return True

    def seen(self, uuid: str) -> None:
        conn = self._connections.get(uuid)
        if conn is not None:
            conn.last_seen = time.monotonic()
            self._seen.add(uuid)

    # -- queries ---------------------------------------------------------------
    def get(self, uuid: str) -> Connection | None:
        return self._connections.get(uuid)

    def online(self) -> list[str]:
        return list(self._connections)

    def connections(self) -> Iterable[Connection]:
        return self._connections.values()

    # -- calls -----------------------------------------------------------------
    async def call(
        self,
        uuid: str,
        method: str,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        conn = self._connections.get(uuid)
        if conn is None:
            raise SessionClosed(f"device {uuid} is not connected")
        return await conn.session.call(method, params, timeout or self._call_timeout)

    async def ping(self, uuid: str, timeout: float | None = None) -> dict[str, Any]:
        """``{"ok": bool, "rtt_ms": float}`` (plus ``error`` when not ok)."""
        start = time.perf_counter()
        nonce = f"{start:.9f}"
        try:
            reply = await self.call(uuid, methods.PING, {"nonce": nonce}, timeout)
        except (SessionClosed, CallTimeout, RemoteError) as exc:
            return {"ok": False, "rtt_ms": None, "error": str(exc)}
        rtt = (time.perf_counter() - start) * 1000.0
        if reply.get("nonce") != nonce:
            return {"ok": False, "rtt_ms": rtt, "error": "ping reply did not echo the params"}
        self.seen(uuid)
        return {"ok": True, "rtt_ms": round(rtt, 3)}

    async def ping_many(
        self, uuids: Iterable[str], timeout: float | None = None
    ) -> dict[str, dict[str, Any]]:
        targets = list(uuids)
        results = await asyncio.gather(*(self.ping(u, timeout) for u in targets))
        return dict(zip(targets, results, strict=True))

    # -- presence --------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        interval = max(0.5, min(5.0, self._offline_after / 3))
        while True:
            await asyncio.sleep(interval)  # a periodic job, not synchronisation
            try:
                await self._flush_seen()
                await self._expire_silent()
            except Exception:
                log.exception("presence sweep failed; retrying")

    async def _flush_seen(self) -> None:
        if not self._seen:
            return
        batch, self._seen = list(self._seen), set()
        now = utcnow()  # through Store.write: close() cancels the sweeper, maybe mid-flush
        await self._store.write(lambda tx: tx.devices.touch(batch, now))

    async def _expire_silent(self) -> None:
        limit = time.monotonic() - self._offline_after
        for conn in [c for c in self._connections.values() if c.last_seen < limit]:
            log.warning("device %s silent for %.0f s: dropping it", conn.uuid, self._offline_after)
            conn.session.close(SessionClosed("no heartbeat"))
            conn.drop()
            await self.detach(conn.uuid, conn.session, "no heartbeat")
