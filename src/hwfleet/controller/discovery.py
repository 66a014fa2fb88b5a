"""The controller's discovery: a browser run only when asked, checked against enrolled keys.

It never queries a real interface unless the operator names one
(``--discovery-interface``); ``POST /api/v1/discovery/scan`` probes addresses
the operator gives. Announcements from an enrolled uuid must verify with that
device's key; the key cache follows the key store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from hwfleet.bus.topology import EventKey
from hwfleet.controller.events import utcnow
from hwfleet.discovery import DiscoveryBrowser

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus, Delivery, Subscription
    from hwfleet.controller.events import EventPublisher
    from hwfleet.discovery import Discovered
    from hwfleet.store import Store
    from hwfleet.store.records import KeyRecord

log = logging.getLogger(__name__)

#: Past this many devices changed at once, one reload reads every key instead.
CHANGED_MAX = 500


class EnrolledKeys:
    """uuid → raw Ed25519 public key of its accepted key, refreshed from the store."""

    def __init__(self, store: Store, refresh: float = 10.0) -> None:
        self._store = store
        self._refresh = refresh
        self._keys: dict[str, bytes] = {}
        self._parsed: dict[str, bytes | None] = {}  # key fingerprint → its raw Ed25519 key
        self._task: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._dirty = False
        #: Devices whose keys changed since the last reload; None: reload every key.
        self._changed: set[str] | None = set()
        self._reloading: asyncio.Task[None] | None = None

    def __call__(self, uuid: str) -> bytes | None:
        return self._keys.get(uuid)

    async def load(self) -> None:
        """Every key from the store (at start and every ``refresh`` seconds)."""
        async with self._store.tx() as tx:
            records = await tx.keys.list()
        keys: dict[str, bytes] = {}
        parsed: dict[str, bytes | None] = {}
        self._take(records, keys, parsed)
        self._keys = keys
        self._parsed = parsed

    async def load_devices(self, uuids: set[str]) -> None:
        """The keys of these devices only: what an enrollment event changed.

        Reading every key on every event made an enrollment storm quadratic: a
        thousand devices enrolling in batches read the whole key table per batch,
        7 % of the controller's samples (issue 18).
        """
        async with self._store.tx() as tx:
            records = await tx.keys.for_devices(sorted(uuids))
        keys = dict(self._keys)
        for uuid in uuids:
            keys.pop(uuid, None)
        self._take(records, keys, self._parsed)
        self._keys = keys

    def _take(
        self, records: list[KeyRecord], keys: dict[str, bytes], parsed: dict[str, bytes | None]
    ) -> None:
        """Accepted keys of ``records`` (oldest first: the newest accepted key wins) into keys."""
        for record in records:
            if record.state == "accepted" and record.cert_pem:
                # A fingerprint names one key: parse only certificates not seen before (this
                # runs on every enrollment, so re-parsing all of them would be quadratic).
                if record.fingerprint in self._parsed:
                    raw = self._parsed[record.fingerprint]
                else:
                    raw = ed25519_of_certificate(record.cert_pem)
                parsed[record.fingerprint] = raw
                if raw is not None:
                    keys[record.device_uuid] = raw

    async def start(self, bus: Bus | None = None) -> None:
        """Load now; reload on every enrollment event (any replica's) and periodically."""
        await self.load()
        if bus is not None:
            # A device enrolled a moment ago must be checked against its key at once, or a
            # spoof in the first refresh period would pass as a first sighting.
            self._subscription = await bus.subscribe("events", "enrollment.#", self._on_change)
        self._task = asyncio.create_task(self._follow(), name="discovery-keys")

    async def _on_change(self, delivery: Delivery) -> None:
        # Coalesced: every event asks for a load that starts after it arrived, but events
        # arriving during a load share the one after it. A load per event read every key
        # per enrollment: quadratic in an enrollment storm (a 1,000-device fleet on
        # PostgreSQL spent 17% of the controller here and never finished connecting).
        # The event names its device (``enrollment.<state>.<uuid>``): only its keys are read.
        words = delivery.routing_key.split(".")
        if self._changed is not None and len(words) == 3 and len(self._changed) < CHANGED_MAX:
            self._changed.add(words[2])
        else:
            self._changed = None
        self._dirty = True
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.create_task(self._reload(), name="discovery-keys-reload")

    async def _reload(self) -> None:
        while self._dirty:
            self._dirty = False
            changed, self._changed = self._changed, set()
            try:
                if changed is None:
                    await self.load()
                else:
                    await self.load_devices(changed)
            except Exception:
                log.exception("could not reload enrolled keys for discovery")

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.cancel()
        for task in (self._task, self._reloading):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)  # a refresh period, not synchronisation
            try:
                await self.load()
            except Exception:
                log.exception("could not refresh enrolled keys for discovery")


def ed25519_of_certificate(cert_pem: str) -> bytes | None:
    """The raw Ed25519 key a device certificate certifies (discovery signs with Ed25519 only)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def build_browser(keys: EnrolledKeys, interface: str | None, port: int) -> DiscoveryBrowser:
    return DiscoveryBrowser(interface=interface or None, known_keys=keys, port=port)


class DiscoveryRecorder:
    """Keeps what the browser sees in the store and raises events operators can follow.

    ``tx.discovered`` is what ``GET /api/v1/devices`` merges in for devices that answered
    discovery but never enrolled; ``device.discovered.<uuid>`` announces a newcomer and
    ``device.spoofed.<uuid>`` an announcement that failed the enrolled key's check.
    """

    def __init__(self, browser: DiscoveryBrowser, store: Store, events: EventPublisher) -> None:
        self._browser = browser
        self._store = store
        self._events = events
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        updates = self._browser.updates()  # subscribed now, so nothing before the task is lost
        self._task = asyncio.create_task(self._follow(updates), name="discovery-recorder")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, updates: Any) -> None:
        async for update in updates:
            try:
                await self.record(update)
            except Exception:  # one bad record must not stop the rest being kept
                log.exception("could not record a discovery update")

    async def record(self, update: Discovered) -> None:
        uuid = update.metadata.uuid
        doc = update.to_json()
        if update.event == "spoofed":
            log.warning(
                "spoofed discovery announcement for %s from %s: %s",
                uuid,
                update.spoof_source,
                update.spoof_reason,
            )
            spoof = {"uuid": uuid, "source": update.spoof_source, "reason": update.spoof_reason}
            await self._events.emit(EventKey.device_spoofed(uuid), spoof, device_uuid=uuid)
        if update.event not in ("new", "updated", "moved", "spoofed", "conflict"):
            return  # age changes (online/stale/offline) are derived from last_seen on read
        async with self._store.tx() as tx:
            await tx.discovered.upsert(
                uuid,
                {k: v for k, v in doc.items() if k != "history"},
                ipaddr=update.metadata.ipaddr,
                spoofed=update.spoofed,
                at=utcnow(),
            )
        if update.event == "new" and not await self._is_enrolled(uuid):
            payload: dict[str, Any] = {
                "uuid": uuid,
                "ipaddr": update.metadata.ipaddr,
                "signed": update.signed,
            }
            await self._events.emit(EventKey.device_discovered(uuid), payload, device_uuid=uuid)

    async def _is_enrolled(self, uuid: str) -> bool:
        async with self._store.tx(readonly=True) as tx:
            return await tx.devices.get(uuid) is not None
