"""The controller/operator side of discovery: query, listen, keep a verified device registry.

Where queries go (DESIGN §8 network safety):

- ``interface`` named: multicast to the group on that interface only (the socket is
  bound to the device), and unicast probes if given.
- only ``probe``: unicast to those addresses/CIDRs, nothing else.
- neither: multicast on the loopback interface only, from 127.0.0.1 — this machine's
  agents answer, nothing leaves it.

Probes are paced (``rate`` packets/s) and retried to the silent addresses at most
``retries`` times within the scan's timeout. Replies must echo one of our recent
nonces; announcements must be fresh (timestamp window) and new (nonce cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable

from hwfleet.discovery.guards import ReplayGuard
from hwfleet.discovery.packets import AdvertBody, BadPacketError, PacketType, build_query, parse
from hwfleet.discovery.registry import Discovered, KnownKeys, Registry
from hwfleet.discovery.targets import parse_targets
from hwfleet.discovery.udp import (
    DEFAULT_GROUP,
    DEFAULT_PORT,
    DatagramEndpoint,
    interface_index,
    multicast_request,
)

RECV_BUFFER = 4 * 1024 * 1024
#: Linux's SO_RCVBUFFORCE (root may exceed rmem_max); the socket module does not name it.
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_BATCH = 64
_MAX_NONCES = 1024


class DiscoveryBrowser:
    """Finds devices; an async iterator of ``Discovered`` updates while started."""

    def __init__(
        self,
        *,
        interface: str | None = None,
        probe: Iterable[str] = (),
        port: int = DEFAULT_PORT,
        group: str | None = DEFAULT_GROUP,
        known_keys: KnownKeys | None = None,
        max_age: float = 30.0,
        listen: tuple[str, int] | None = None,
        broadcast: bool = False,
        rate: float = 20000.0,
        retries: int = 2,
        retry_interval: float = 0.2,
        replay_window: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if interface is not None:
            interface_index(interface)  # fail now, with the name, not at start()
        if rate <= 0 or not 0 <= retries <= 10 or retry_interval <= 0:
            raise ValueError("rate must be > 0, retries 0..10 and retry_interval > 0")
        self.targets = parse_targets(probe)
        self.interface = interface
        self.port = port
        self.group = group
        self.listen = listen
        self.broadcast = broadcast and interface is not None
        self.rate = rate
        self.retries = retries
        self.retry_interval = retry_interval
        self.registry = Registry(known_keys=known_keys, max_age=max_age, clock=clock, wall=wall)
        self.replay = ReplayGuard(replay_window)
        self.counters: Counter[str] = Counter()
        self._clock = clock
        self._wall = wall
        self._nonces: dict[str, float] = {}
        self._endpoints: list[DatagramEndpoint] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._subscribers: set[asyncio.Queue[Discovered | None]] = set()
        self._scans: list[_ScanState] = []
        self._ager: asyncio.Task[None] | None = None

    @property
    def multicast(self) -> bool:
        """Whether queries go to the group (an interface was named, or loopback by default)."""
        return self.group is not None and (self.interface is not None or not self.targets)

    @property
    def multicast_interface(self) -> str:
        return self.interface or "lo"

    def stats(self) -> dict[str, int]:
        merged = Counter(self.counters)
        merged.update(self.registry.counters)
        for endpoint in self._endpoints:
            merged.update(endpoint.counters)
        return dict(merged)

    def devices(self) -> list[Discovered]:
        return self.registry.devices()

    # -- sockets -------------------------------------------------------------------------

    def _query_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _big_receive_buffer(sock)
            host = "0.0.0.0"
            if self.multicast:
                name = self.multicast_interface
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())
                mreq = multicast_request("0.0.0.0", interface_index(name))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreq)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                if self.interface is None:
                    host = "127.0.0.1"
            if self.broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind((host, 0))
        except BaseException:
            sock.close()
            raise
        return sock

    def _listen_socket(self, address: tuple[str, int]) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _big_receive_buffer(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.multicast:
                name = self.multicast_interface
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, name.encode())
            sock.bind(address)
            if self.multicast and self.group is not None:
                mreq = multicast_request(self.group, interface_index(self.multicast_interface))
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        except BaseException:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        if self._transports:
            return
        loop = asyncio.get_running_loop()
        socks = [self._query_socket()]
        if self.listen is not None:
            try:
                socks.append(self._listen_socket(self.listen))
            except BaseException:
                socks[0].close()
                raise
        for sock in socks:
            transport, endpoint = await loop.create_datagram_endpoint(
                lambda: DatagramEndpoint(self._on_datagram), sock=sock
            )
            self._transports.append(transport)
            self._endpoints.append(endpoint)
        self._ager = loop.create_task(self._age_loop())

    async def close(self) -> None:
        if self._ager is not None:
            self._ager.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ager
            self._ager = None
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        for queue in list(self._subscribers):
            if queue.full():
                queue.get_nowait()  # make room: the end marker matters more than one update
            queue.put_nowait(None)

    async def __aenter__(self) -> DiscoveryBrowser:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def listen_address(self) -> tuple[str, int] | None:
        if len(self._transports) < 2:
            return None
        host, port = self._transports[1].get_extra_info("sockname")[:2]
        return str(host), int(port)

    # -- updates -------------------------------------------------------------------------

    def updates(self, maxsize: int = 10000) -> BrowserUpdates:
        """Every change (new, updated, moved, spoofed, state) from this call until ``close()``.

        The subscription starts at once, not at the first ``anext``, so nothing that
        happens in between is missed.
        """
        subscription = BrowserUpdates(self._subscribers, maxsize)
        self._subscribers.add(subscription.queue)
        return subscription

    def __aiter__(self) -> AsyncIterator[Discovered]:
        return self.updates()

    def _publish(self, update: Discovered) -> None:
        for queue in self._subscribers:
            try:
                queue.put_nowait(update)
            except asyncio.QueueFull:
                self.counters["updates_dropped"] += 1

    async def _age_loop(self) -> None:
        interval = max(0.05, self.registry.max_age / 4)
        while True:
            await asyncio.sleep(interval)
            for update in self.registry.age():
                self._publish(update)

    # -- receiving -----------------------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        self.counters["received"] += 1
        try:
            packet = parse(data)
        except BadPacketError as exc:
            self.counters["bad"] += 1
            self.counters[f"bad_{exc.code}"] += 1
            return
        body = packet.body
        if not isinstance(body, AdvertBody):
            self.counters["ignored"] += 1
            return
        if packet.type is PacketType.REPLY:
            expiry = self._nonces.get(body.nonce)
            if expiry is None or expiry < self._clock():
                self.counters["unsolicited"] += 1
                return
        else:
            reason = self.replay.check(body.nonce, body.ts, self._wall())
            if reason is not None:
                self.counters["replayed" if "replay" in reason else "expired"] += 1
                return
        update = self.registry.observe(packet, addr[0])
        if update is None:
            return
        for scan in self._scans:
            scan.sources.add(addr[0])
            if update.event != "spoofed":
                scan.uuids.add(body.uuid)
            scan.progress.set()
        self._publish(update)

    # -- querying ------------------------------------------------------------------------

    def _new_nonce(self) -> tuple[bytes, str]:
        now = self._clock()
        for nonce, expiry in list(self._nonces.items()):
            if expiry < now or len(self._nonces) > _MAX_NONCES:
                del self._nonces[nonce]
        packet, nonce = build_query()
        # Late replies to a scan still count while the device would be "online".
        self._nonces[nonce] = now + max(self.registry.max_age, 5.0)
        return packet, nonce

    async def query(self, targets: Iterable[str] | None = None) -> str:
        """Send one round: the group (if multicasting) and every target, paced; the nonce."""
        if not self._transports:
            raise RuntimeError("browser is not started")
        transport = self._transports[0]
        packet, nonce = self._new_nonce()
        if self.multicast and self.group is not None:
            transport.sendto(packet, (self.group, self.port))
        if self.broadcast:
            transport.sendto(packet, ("255.255.255.255", self.port))
        pending = list(self.targets if targets is None else targets)
        pause = _BATCH / self.rate
        for start in range(0, len(pending), _BATCH):
            if start:
                await asyncio.sleep(pause)
            for host in pending[start : start + _BATCH]:
                transport.sendto(packet, (host, self.port))
        self.counters["queries_sent"] += len(pending) + int(self.multicast) + int(self.broadcast)
        return nonce

    async def scan(
        self,
        timeout: float,
        *,
        probe: Iterable[str] | None = None,
        expect: int | None = None,
    ) -> list[Discovered]:
        """Query, retry the silent targets, and return the devices that answered.

        Ends at ``timeout``, or earlier once ``expect`` devices answered, or (unicast
        only) once every probed address answered.
        """
        targets = self.targets if probe is None else parse_targets([*self.targets, *probe])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        scan = _ScanState()
        self._scans.append(scan)

        def done() -> bool:
            if expect is not None and len(scan.uuids) >= expect:
                return True
            return not self.multicast and bool(targets) and scan.sources.issuperset(targets)

        try:
            for attempt in range(self.retries + 1):
                if done() or loop.time() >= deadline:
                    break
                await self.query([t for t in targets if t not in scan.sources])
                wait_until = min(deadline, loop.time() + self.retry_interval * 2**attempt)
                await scan.wait(done, wait_until)
            await scan.wait(done, deadline)
        finally:
            self._scans.remove(scan)
        found = [d for d in self.registry.devices() if d.metadata.uuid in scan.uuids]
        return sorted(found, key=lambda d: _address_key(d.metadata.ipaddr))


class BrowserUpdates:
    """An async iterator over browser updates; ends when the browser closes."""

    def __init__(self, registry: set[asyncio.Queue[Discovered | None]], maxsize: int) -> None:
        self.queue: asyncio.Queue[Discovered | None] = asyncio.Queue(maxsize)
        self._registry = registry

    def __aiter__(self) -> BrowserUpdates:
        return self

    async def __anext__(self) -> Discovered:
        item = await self.queue.get()
        if item is None:
            self.close()
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Stop receiving updates."""
        self._registry.discard(self.queue)


class _ScanState:
    """One running scan: who answered it, and an event set on every answer."""

    def __init__(self) -> None:
        self.sources: set[str] = set()
        self.uuids: set[str] = set()
        self.progress = asyncio.Event()

    async def wait(self, done: Callable[[], bool], until: float) -> None:
        loop = asyncio.get_running_loop()
        while not done() and (remaining := until - loop.time()) > 0:
            self.progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.progress.wait()


def _big_receive_buffer(sock: socket.socket) -> None:
    # A thousand replies can land at once; the default buffer holds about a hundred.
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, RECV_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECV_BUFFER)


def _address_key(ipaddr: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in ipaddr.split("."))
    except ValueError:
        return (1 << 16,)
