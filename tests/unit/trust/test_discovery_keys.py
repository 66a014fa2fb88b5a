"""Discovery's key cache: an enrollment event reads only its device's keys; a revocation shows
at once; an event naming no device reads them all."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from hwfleet.bus.base import Delivery
from hwfleet.controller.discovery import EnrolledKeys
from hwfleet.store import Store
from hwfleet.trust import EnrollmentService, EnrollParams


async def enrolled(service: EnrollmentService, new_csr: Callable[..., str], password: str) -> str:
    device = str(uuid.uuid4())
    reply = await service.enroll(
        EnrollParams(uuid=device, csr=new_csr(), password=password), source_ip="10.0.0.9"
    )
    assert reply.state == "accepted"
    return device


async def event(keys: EnrolledKeys, routing_key: str) -> None:
    await keys._on_change(Delivery(exchange="events", routing_key=routing_key, body=b"{}"))
    assert keys._reloading is not None
    await keys._reloading


async def forget_behind_its_back(store: Store, device: str) -> None:
    async with store.tx() as tx:
        for key in await tx.keys.for_device(device):
            await tx.keys.delete(key.id)


async def test_an_event_reads_its_device_only_and_a_revocation_shows_at_once(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str], password: str
) -> None:
    a, b = [await enrolled(service, new_csr, password) for _ in range(2)]
    keys = EnrolledKeys(store)
    await keys.load()
    assert keys(a) is not None and keys(b) is not None
    c = await enrolled(service, new_csr, password)
    assert keys(c) is None
    # b's key goes without an event: a reload for c alone does not notice (it reads c's).
    await forget_behind_its_back(store, b)
    await event(keys, f"enrollment.accepted.{c}")
    assert keys(c) is not None and keys(b) is not None
    # b's own event (a revocation) removes it at once.
    await event(keys, f"enrollment.revoked.{b}")
    assert keys(b) is None and keys(a) is not None and keys(c) is not None
    # An event naming no device reads every key.
    await forget_behind_its_back(store, a)
    await event(keys, "enrollment")
    assert keys(a) is None and keys(c) is not None
    await keys.close()


async def test_events_arriving_during_a_reload_are_read_by_the_next(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str], password: str
) -> None:
    keys = EnrolledKeys(store)
    await keys.load()
    devices = [await enrolled(service, new_csr, password) for _ in range(3)]
    for device in devices:  # three events before the reload task first runs
        await keys._on_change(
            Delivery(exchange="events", routing_key=f"enrollment.accepted.{device}", body=b"")
        )
    assert keys._reloading is not None
    await keys._reloading
    assert all(keys(d) is not None for d in devices)
    await keys.close()
