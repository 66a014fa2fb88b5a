"""Connected devices: sessions by uuid, presence from heartbeats, calls and ping-all.

The database holds what is known about a device, including whether it is
online (:mod:`hwfleet.controller.presence`); this registry holds the sessions
this replica can reach devices through, whatever the carrier.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hwfleet.bus.topology import EventKey
from hwfleet.controller.attach_batch import AttachWriter
from hwfleet.controller.events import EventPublisher, utcnow
from hwfleet.controller.presence import Heartbeats, LivenessRule
from hwfleet.protocol import methods
from hwfleet.protocol.errors import CallTimeoutError, RemoteError, SessionClosedError
from hwfleet.protocol.session import Session

if TYPE_CHECKING:
    from hwfleet.store import EventRecord, Store
    from hwfleet.store.tx import Tx

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
    #: The latest ``last_seen`` this replica wrote for the device (None: it wrote none).
    recorded: datetime | None = None


def _stamp(answered: dict[str, float], uuid: str, _future: asyncio.Future[Any]) -> None:
    """When a :meth:`DeviceRegistry.ping_many` reply arrived (its round-trip time)."""
    answered.setdefault(uuid, time.perf_counter())


#: Finds a session for a device this replica has no connection to (the AMQP carrier).
Reacher = Callable[[str], Awaitable["Connection | None"]]


class DeviceRegistry:
    """This replica's sessions; presence by the store's liveness rule, heartbeats flushed in bulk.

    ``sole``: no other controller can hold connections (an in-process bus), so at start
    every device still marked online is a leftover of this controller's previous run.
    """

    def __init__(
        self,
        store: Store,
        events: EventPublisher,
        *,
        offline_after: float,
        call_timeout: float,
        sole: bool = False,
    ) -> None:
        self._store = store
        self._events = events
        self.rule = LivenessRule(offline_after)
        self._sole = sole
        self._call_timeout = call_timeout
        self._connections: dict[str, Connection] = {}
        self._heartbeats = Heartbeats()
        self._sweeper: asyncio.Task[None] | None = None
        self._attach_hooks: list[Callable[[Connection], None]] = []
        self._reacher: Reacher | None = None
        #: Rows and events of arriving devices, many per commit in a reconnect storm.
        self._arrivals = AttachWriter(store, events)

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        if self._sole:
            async with self._store.tx() as tx:
                await tx.devices.mark_all_offline()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="presence-sweeper")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        for conn in list(self._connections.values()):
            conn.session.close()
            conn.drop()
        await self._arrivals.close()
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
            previous.session.close(SessionClosedError("replaced by a newer connection"))
            previous.drop()
        self._connections[conn.uuid] = conn
        at = utcnow()
        conn.recorded = at
        await self._arrivals.record(conn.uuid, hs, conn.ipaddr, conn.transport, at)
        self._run_hooks(conn)

    def adopt(self, conn: Connection) -> None:
        """Reach a device through this replica without recording anything (it identified
        itself to another replica; its heartbeats here keep it online)."""
        previous = self._connections.get(conn.uuid)
        if previous is not None and not previous.session.closed:
            return  # already reachable here
        self._connections[conn.uuid] = conn
        self._run_hooks(conn)

    def _run_hooks(self, conn: Connection) -> None:
        for hook in self._attach_hooks:
            try:
                hook(conn)
            except Exception:  # a hook's bug must not refuse the device
                log.exception("attach hook %r failed for %s", hook, conn.uuid)

    def reach_with(self, reacher: Reacher) -> None:
        """How :meth:`call` reaches a device this replica has no session with yet."""
        self._reacher = reacher

    async def detach(self, uuid: str, session: Session[Any], reason: str) -> None:
        conn = self._connections.get(uuid)
        if conn is None or conn.session is not session:
            return  # already replaced by a newer connection
        del self._connections[uuid]
        if conn.recorded is None:
            return  # adopted: this replica never vouched for it
        # Through Store.write: a shutdown cancels connection handlers, often right here.
        recorded = conn.recorded
        changed = await self._store.write(lambda tx: tx.devices.disconnect(uuid, recorded))
        if changed:
            await self._events.emit(
                EventKey.device_offline(uuid), {"uuid": uuid, "reason": reason}, device_uuid=uuid
            )

    def drop(self, uuid: str, reason: str) -> bool:
        """Disconnect a device now (revoked key, operator action)."""
        conn = self._connections.get(uuid)
        if conn is None:
            return False
        conn.session.close(SessionClosedError(reason))
        conn.drop()
        return True

    def seen(self, uuid: str) -> None:
        conn = self._connections.get(uuid)
        if conn is not None:
            conn.last_seen = time.monotonic()
            self._heartbeats.note(uuid)

    # -- queries ---------------------------------------------------------------
    def get(self, uuid: str) -> Connection | None:
        return self._connections.get(uuid)

    def online(self) -> list[str]:
        """The devices this replica holds a session with."""
        return list(self._connections)

    async def online_now(self) -> list[str]:
        """Every device online by the liveness rule, whichever replica hears it."""
        async with self._store.tx(readonly=True) as tx:
            return await tx.devices.online_uuids(self.rule.stale_before())

    async def reachable(self, uuid: str) -> bool:
        """Whether this replica can call the device (perhaps through the bus)."""
        if uuid in self._connections:
            return True
        return self._reacher is not None and await self._reacher(uuid) is not None

    def stale_before(self) -> datetime:
        return self.rule.stale_before()

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
        if conn is None and self._reacher is not None:
            conn = await self._reacher(uuid)
        if conn is None:
            raise SessionClosedError(f"device {uuid} is not connected to this controller")
        return await conn.session.call(method, params, timeout or self._call_timeout)

    async def ping(self, uuid: str, timeout: float | None = None) -> dict[str, Any]:
        """``{"ok": bool, "rtt_ms": float}`` (plus ``error`` when not ok)."""
        start = time.perf_counter()
        nonce = f"{start:.9f}"
        try:
            reply = await self.call(uuid, methods.PING, {"nonce": nonce}, timeout)
        except (SessionClosedError, CallTimeoutError, RemoteError) as exc:
            return {"ok": False, "rtt_ms": None, "error": str(exc)}
        return self._echoed(uuid, reply, nonce, (time.perf_counter() - start) * 1000.0)

    def _echoed(self, uuid: str, reply: dict[str, Any], nonce: str, rtt: float) -> dict[str, Any]:
        """A ping's reply as its result: ok only when it echoes the nonce (then seen)."""
        if reply.get("nonce") != nonce:
            return {"ok": False, "rtt_ms": rtt, "error": "ping reply did not echo the params"}
        self.seen(uuid)
        return {"ok": True, "rtt_ms": round(rtt, 3)}

    async def ping_many(
        self, uuids: Iterable[str], timeout: float | None = None
    ) -> dict[str, dict[str, Any]]:
        """:meth:`ping` each device; the stream links' pings are all sent at once and waited
        for under one deadline: a task and a timer per device were a fifth of a 10,000-device
        ping-all's CPU (issue 18). Devices reached otherwise (the bus) are pinged one by one."""
        targets = list(uuids)
        limit = timeout or self._call_timeout
        results: dict[str, dict[str, Any]] = {}
        waiting: dict[str, tuple[Session[Any], str, str, float, asyncio.Future[Any]]] = {}
        answered: dict[str, float] = {}
        others: list[str] = []
        for uuid in targets:
            conn = self._connections.get(uuid)
            if conn is None or not conn.session.can_begin:
                others.append(uuid)
                continue
            start = time.perf_counter()
            nonce = f"{start:.9f}"
            try:
                call_id, future = conn.session.begin(methods.PING, {"nonce": nonce})
            except SessionClosedError as exc:
                results[uuid] = {"ok": False, "rtt_ms": None, "error": str(exc)}
                continue
            future.add_done_callback(functools.partial(_stamp, answered, uuid))
            waiting[uuid] = (conn.session, call_id, nonce, start, future)
        slow = asyncio.gather(*(self.ping(u, timeout) for u in others)) if others else None
        if waiting:
            await asyncio.wait([w[4] for w in waiting.values()], timeout=limit)
        for uuid, (session, call_id, nonce, start, future) in waiting.items():
            session.forget(call_id)
            results[uuid] = self._pinged(uuid, session, future, nonce, start, answered, limit)
        if slow is not None:
            results.update(zip(others, await slow, strict=True))
        return {u: results[u] for u in targets}

    def _pinged(
        self,
        uuid: str,
        session: Session[Any],
        future: asyncio.Future[Any],
        nonce: str,
        start: float,
        answered: dict[str, float],
        limit: float,
    ) -> dict[str, Any]:
        """One :meth:`ping_many` result, as :meth:`ping` words it."""
        if not future.done():
            future.cancel()
            error = CallTimeoutError(methods.PING, limit, session.peer)
            return {"ok": False, "rtt_ms": None, "error": str(error)}
        if future.cancelled():
            return {"ok": False, "rtt_ms": None, "error": f"ping to {session.peer} cancelled"}
        if (exc := future.exception()) is not None:
            return {"ok": False, "rtt_ms": None, "error": str(exc)}
        rtt = (answered.get(uuid, time.perf_counter()) - start) * 1000.0
        return self._echoed(uuid, future.result(), nonce, rtt)

    # -- presence --------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.rule.sweep_interval)  # a periodic job, not synchronisation
            try:
                await self._flush_seen()
                await self._expire_silent()
            except Exception:
                log.exception("presence sweep failed; retrying")

    async def _flush_seen(self) -> None:
        """Record the heartbeats this replica handled; revive devices marked offline."""
        if not self._heartbeats:
            return
        # Only devices still reachable here: a dropped one's last beat is no proof.
        beats = {u: at for u, at in self._heartbeats.take().items() if u in self._connections}

        async def flush(tx: Tx) -> list[EventRecord]:
            revived = await tx.devices.touch(beats)
            if not revived:
                return []
            items = [
                (EventKey.device_online(u), {"uuid": u, "reason": "heartbeat"}, u)
                for u in set(revived)
            ]
            return await tx.events.add_many(items, at=utcnow())

        # Through Store.write: close() cancels the sweeper, maybe mid-flush.
        records = await self._store.write(flush)
        for uuid, at in beats.items():
            conn = self._connections.get(uuid)
            if conn is not None and (conn.recorded is None or conn.recorded < at):
                conn.recorded = at
        await self._announce(records)

    async def _expire_silent(self) -> None:
        # Stream devices: only this replica hears them, so its own clock decides.
        limit = time.monotonic() - self.rule.window
        for conn in [
            c for c in self._connections.values() if c.transport == "stream" and c.last_seen < limit
        ]:
            log.warning("device %s silent for %.0f s: dropping it", conn.uuid, self.rule.window)
            conn.session.close(SessionClosedError("no heartbeat"))
            conn.drop()
            await self.detach(conn.uuid, conn.session, "no heartbeat")
        # Every device: the store decides; one replica wins each transition and reports it.
        reason = f"no heartbeat for {self.rule.window:g} s"
        async with self._store.tx() as tx:
            expired = await tx.devices.expire(self.rule.stale_before())
            items = [
                (EventKey.device_offline(u), {"uuid": u, "reason": reason}, u) for u in expired
            ]
            records = await tx.events.add_many(items, at=utcnow())
        await self._announce(records)

    async def _announce(self, records: list[EventRecord]) -> None:
        for record in records:
            await self._events.announce(
                record.routing_key, record.payload, event_id=record.id, at=record.at
            )
