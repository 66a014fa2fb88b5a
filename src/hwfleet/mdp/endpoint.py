"""The agent's UDP diagnostics endpoint (DESIGN §13).

Every datagram is checked before anything runs: size, JSON, version, MAC under the
machine key, timestamp window, then the nonce cache. Anything that fails is dropped
without a reply (a reply would tell a prober the port is live and which check it
failed) and counted by reason in :attr:`MdpEndpoint.counters`. Version "1.0" (the key
inside the message, the seed's form) is refused the same way unless ``legacy`` is on.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from hwfleet.mdp import wire
from hwfleet.mdp.operations import OperationContext, Operations
from hwfleet.mdp.replay import NonceCache
from hwfleet.mdp.split import pack_reply

log = logging.getLogger(__name__)

#: Operations one request may name; more is malformed.
MAX_OPERATIONS = 32
#: Operations a version "1.0" request may not run: they change who may log in here.
V2_ONLY = frozenset({"cluster_trust"})
#: Requests being worked on at once; more are dropped (``busy``) rather than queued.
MAX_IN_FLIGHT = 16

ClusterHook = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: MdpEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | Any, ...]) -> None:
        self.endpoint.received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        self.endpoint.counters["socket_error"] += 1


class MdpEndpoint:
    """Answers authenticated diagnostics requests on ``bind``:``port``."""

    def __init__(
        self,
        key: bytes,
        operations: Operations,
        *,
        bind: str = "0.0.0.0",
        port: int = 12345,
        legacy: bool = False,
        context: OperationContext | None = None,
        cluster: ClusterHook | None = None,
        window: float = wire.WINDOW,
    ) -> None:
        self.key = key
        self.operations = operations
        self.bind, self.port = bind, port
        self.legacy = legacy
        self.window = window
        self.counters: Counter[str] = Counter()
        self.context = context or OperationContext(operations)
        self.context.counters = self.counters
        self.cluster = cluster
        self._nonces = NonceCache(window=window)
        self._transport: asyncio.DatagramTransport | None = None
        self._work: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.bind, self.port)
        )
        self.attach(transport)

    def attach(self, transport: asyncio.DatagramTransport) -> None:
        """Serve on a socket bound before this endpoint was built (:mod:`hwfleet.mdp.serve`),
        whose protocol hands every datagram to :meth:`received`."""
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        sync = self.context.state.get("sync")
        if sync is not None:  # cluster mode's folder sync loop (hwfleet.mdp.sync)
            await sync.close()
        for task in list(self._work):
            task.cancel()
        await asyncio.gather(*self._work, return_exceptions=True)

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        """Send from the endpoint's own address (reports: the collector knows us by it)."""
        if self._transport is None or self._transport.is_closing():
            return False
        self._transport.sendto(data, addr)
        return True

    # -- admission -----------------------------------------------------------
    def received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.counters["received"] += 1
        reason = self._admit(data)
        if isinstance(reason, str):
            self.counters[reason] += 1
            log.debug("MDP datagram from %s dropped: %s", addr[0], reason)
            return
        if len(self._work) >= MAX_IN_FLIGHT:
            self.counters["busy"] += 1
            return
        task = asyncio.create_task(self._answer(reason, addr))
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    def _admit(self, data: bytes) -> dict[str, Any] | str:
        """The request, or the reason it is dropped."""
        try:
            obj = wire.decode(data)
        except wire.WireError as exc:
            return exc.reason
        ops = obj.get("operations", [])
        if not _valid_operations(ops) or not isinstance(obj.get("cluster_info", {}), dict):
            return "malformed"
        version = obj.get("version")
        if version == wire.LEGACY:
            if not self.legacy:
                return "legacy_refused"
            given = obj.get("key")
            if not isinstance(given, str) or not hmac.compare_digest(
                given.encode("utf-8", "replace"), self.key.hex().encode("ascii")
            ):
                return "bad_key"
            return obj
        if version != wire.V2:
            return "malformed"
        now = time.time()
        try:
            _, nonce = wire.check_fresh(obj, now, window=float("inf"))
        except wire.WireError as exc:
            return exc.reason
        if "key" in obj or not wire.verify(self.key, obj):
            return "bad_key"
        try:
            wire.check_fresh(obj, now, self.window)
        except wire.WireError as exc:
            return exc.reason
        return self._nonces.admit(nonce, now) or obj

    # -- work ------------------------------------------------------------------
    async def _answer(self, request: dict[str, Any], addr: tuple[str, int]) -> None:
        legacy = request.get("version") == wire.LEGACY
        entries = []
        for op in request.get("operations", []):
            if legacy and op["name"] in V2_ONLY:  # v1.0 carries the key in the clear
                entries.append({"name": op["name"], "status": False,
                                "error": "this operation needs version 2"})  # fmt: skip
                continue
            entries.append(await self.operations.run(self.context, op["name"], op.get("args")))
        cluster: dict[str, Any] = {}
        if request.get("cluster_info") and self.cluster is not None:
            try:
                cluster = await self.cluster(request["cluster_info"], addr[0])
            except ValueError as exc:
                cluster = {"error": str(exc)}
            except OSError as exc:  # an authenticated sender gets a reason, never silence
                where = f" ({exc.filename})" if exc.filename else ""
                cluster = {"error": f"cluster_info failed here: {exc.strerror or exc}{where}"}
        base = {
            "status": all(e["status"] for e in entries),
            "version": request["version"],
            "cluster_info": cluster,
        }
        if not legacy:
            base["reply_to"] = request["nonce"]
        key = None if legacy else self.key
        for datagram in pack_reply(base, entries, key):
            if self._transport is None or self._transport.is_closing():
                return
            self._transport.sendto(datagram, addr)
            self.counters["sent"] += 1
        self.counters["answered"] += 1


def _valid_operations(ops: Any) -> bool:
    if not isinstance(ops, list) or len(ops) > MAX_OPERATIONS:
        return False
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("name"), str):
            return False
        if not isinstance(op.get("args", {}), dict | None):
            return False
    return True
