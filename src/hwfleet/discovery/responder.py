"""The device side of discovery: answer queries, announce status changes.

One UDP socket per responder. A real agent binds 0.0.0.0 and joins the multicast
group (on ``interface`` when named), so it hears multicast, broadcast and unicast
queries alike; a simulated device binds its own loopback address with ``group=None``.
Every reply goes back to the query's source, is no larger than the query, and is
rate-limited per source; malformed datagrams are counted by reason and dropped.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

from hwfleet.discovery.guards import PacketRateLimiter
from hwfleet.discovery.metadata import DeviceMetadata
from hwfleet.discovery.udp import (
    DEFAULT_GROUP,
    DEFAULT_PORT,
    DatagramEndpoint,
    interface_index,
    multicast_request,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from hwfleet.discovery.packets import AdvertBody

# hwfleet.discovery.packets (its structs, signing, base64, secrets) is imported when the
# first datagram arrives or an announcement goes out: an agent nobody queries never
# loads it (issue 18: 0.1 to 0.3 MB of an idle agent).

log = logging.getLogger(__name__)


def advert_from(meta: DeviceMetadata, *, nonce: str, ts: float) -> AdvertBody:
    """The wire body for ``meta``, made valid for any browser's strict parser.

    Text is clipped to the 128-character field limit, a uuid is put in canonical form,
    and an ``ipaddr``/endpoint host that is not an IP address is left out rather than
    making the whole packet unparseable (and the device invisible).
    """
    from hwfleet.discovery.packets import MAX_TEXT, AdvertBody

    ipaddr = meta.ipaddr if _is_ip(meta.ipaddr) else ""
    host, port = meta.endpoint
    endpoint = (host, port) if _is_ip(host) else ((ipaddr, port) if ipaddr else None)
    prog = None if meta.st_prog is None else min(100.0, max(0.0, float(meta.st_prog)))
    return AdvertBody(
        uuid=_canonical_uuid(meta.uuid),
        nonce=nonce,
        ts=ts,
        st_id=meta.st_id,
        st_ts=meta.st_ts,
        endpoint=endpoint,
        ipaddr=ipaddr,
        name=meta.name[:MAX_TEXT],
        serial=meta.serial if isinstance(meta.serial, int) else meta.serial[:MAX_TEXT],
        model_id=meta.model_id[:MAX_TEXT],
        version=meta.version[:MAX_TEXT],
        st_prog=prog,
        head_module=None if meta.head_module is None else meta.head_module[:MAX_TEXT],
        error_label=None if meta.error_label is None else meta.error_label[:MAX_TEXT],
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _canonical_uuid(text: str) -> str:
    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        return text  # the browser rejects it with the reason; nothing better to send


class DiscoveryResponder:
    """Answers discovery queries for one device."""

    def __init__(
        self,
        metadata: Callable[[], DeviceMetadata],
        *,
        bind: str = "0.0.0.0",
        port: int = DEFAULT_PORT,
        group: str | None = DEFAULT_GROUP,
        signing_key: Ed25519PrivateKey | None = None,
        interface: str | None = None,
        announce_to: Sequence[tuple[str, int]] = (),
        rate: float = 10.0,
        burst: float = 20.0,
    ) -> None:
        self._metadata = metadata
        self.bind = bind
        self.port = port
        self.group = group
        self.signing_key = signing_key
        self.interface = interface
        self.announce_to = list(announce_to)
        self.limiter = PacketRateLimiter(rate, burst)
        self.counters: Counter[str] = Counter()
        self._endpoint: DatagramEndpoint | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[int]] = set()

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the real port when constructed with ``port=0``."""
        if self._transport is None:
            raise RuntimeError("responder is not started")
        host, port = self._transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def stats(self) -> dict[str, int]:
        merged = Counter(self.counters)
        if self._endpoint is not None:
            merged.update(self._endpoint.counters)
        return dict(merged)

    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if self.group is not None:
                # Several agents (or an agent and a controller) on one host share the group port.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.interface is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.bind((self.bind, self.port))
            if self.group is not None:
                index = interface_index(self.interface) if self.interface else 0
                mreq = multicast_request(self.group, index)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreq)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        except BaseException:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        transport, endpoint = await loop.create_datagram_endpoint(
            lambda: DatagramEndpoint(self._on_datagram), sock=self._socket()
        )
        self._transport, self._endpoint = transport, endpoint

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> DiscoveryResponder:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        from hwfleet.discovery.packets import (
            FLAG_TRUNCATED,
            BadPacketError,
            PacketType,
            QueryBody,
            build_advert,
            parse,
        )

        self.counters["received"] += 1
        try:
            packet = parse(data)
        except BadPacketError as exc:
            self.counters["bad"] += 1
            self.counters[f"bad_{exc.code}"] += 1
            return
        body = packet.body
        if not isinstance(body, QueryBody):
            self.counters["ignored"] += 1  # replies and announcements are for browsers
            return
        # Before the metadata callback and the signature: a flood costs only the parse.
        if not self.limiter.allow(addr[0], time.monotonic()):
            self.counters["rate_limited"] += 1
            return
        try:
            meta = self._metadata()
        except Exception:
            self.counters["metadata_error"] += 1
            log.exception("discovery metadata callback failed")
            return
        if body.uuid is not None and body.uuid != meta.uuid:
            self.counters["ignored"] += 1
            return
        self.counters["queries"] += 1
        advert = advert_from(meta, nonce=body.nonce, ts=time.time())
        try:
            reply = build_advert(PacketType.REPLY, advert, self.signing_key, limit=len(data))
        except (msgspec.EncodeError, TypeError, ValueError):
            reply = None
        if reply is None:
            self.counters["too_large"] += 1
            return
        if reply[6] & FLAG_TRUNCATED:
            self.counters["truncated"] += 1
        if self._transport is not None:
            self._transport.sendto(reply, addr)
            self.counters["replies"] += 1

    async def announce(self) -> int:
        """Send a signed status announcement to the group and ``announce_to``; count sent."""
        if self._transport is None:
            return 0
        from hwfleet.discovery.packets import MAX_ANNOUNCE, PacketType, build_advert, new_nonce

        advert = advert_from(self._metadata(), nonce=new_nonce(), ts=time.time())
        packet = build_advert(PacketType.ANNOUNCE, advert, self.signing_key, limit=MAX_ANNOUNCE)
        if packet is None:
            self.counters["too_large"] += 1
            return 0
        targets = list(self.announce_to)
        if self.group is not None:
            targets.append((self.group, self.port))
        for target in targets:
            self._transport.sendto(packet, target)
        self.counters["announcements"] += len(targets)
        return len(targets)

    def announce_soon(self) -> None:
        """Schedule ``announce()`` (usable as ``StatusTracker.on_change``)."""
        if self._transport is None:
            return
        task = asyncio.get_running_loop().create_task(self.announce())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
