"""Connect-time key checks: batched into one query, remembered, forgotten on every revocation."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from cryptography import x509
from tests.counting_store import CountingStore

from hwfleet.store import Store
from hwfleet.trust import EnrollmentService, EnrollParams, PeerIdentity
from hwfleet.trust.csr import spki_fingerprint
from hwfleet.trust.session_checks import SessionChecks


async def enrolled(
    service: EnrollmentService, new_csr: Callable[..., str], password: str
) -> tuple[PeerIdentity, str]:
    device = str(uuid.uuid4())
    reply = await service.enroll(
        EnrollParams(uuid=device, csr=new_csr(), password=password), source_ip="10.0.0.9"
    )
    assert reply.cert is not None
    cert = x509.load_pem_x509_certificate(reply.cert.encode())
    fp = spki_fingerprint(cert.public_key())
    return PeerIdentity(device_uuid=device, fingerprint=fp, cert_fingerprint=""), reply.key_id


async def test_many_checks_at_once_cost_one_query_and_answer_each(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str], password: str
) -> None:
    devices = [await enrolled(service, new_csr, password) for _ in range(5)]
    counting = CountingStore(store)
    checks = SessionChecks(counting)  # type: ignore[arg-type]
    answers = await asyncio.gather(
        *(checks.accepted(ident.fingerprint, ident.device_uuid) for ident, _ in devices),
        # The right key under another uuid is not this device's session.
        checks.accepted(devices[0][0].fingerprint, str(uuid.uuid4())),
        checks.accepted("SHA256:unknown", devices[0][0].device_uuid),
    )
    assert answers == [True] * 5 + [False, False]
    assert counting.reads == 1
    # Remembered: asking again costs nothing.
    assert await checks.accepted(devices[1][0].fingerprint, devices[1][0].device_uuid)
    assert counting.reads == 1
    await checks.close()


async def test_reject_and_delete_are_seen_at_once(
    service: EnrollmentService, new_csr: Callable[..., str], password: str
) -> None:
    (one, one_key), (two, two_key) = [await enrolled(service, new_csr, password) for _ in range(2)]
    assert await service.check_session(one)
    assert await service.check_session(two)  # both remembered now
    await service.reject(one_key)
    await service.delete(two_key)
    assert not await service.check_session(one)
    assert not await service.check_session(two)


async def test_an_entry_expires_after_its_ttl(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str], password: str
) -> None:
    ident, _ = await enrolled(service, new_csr, password)
    now = [0.0]
    counting = CountingStore(store)
    checks = SessionChecks(counting, ttl=30.0, clock=lambda: now[0])  # type: ignore[arg-type]
    assert await checks.accepted(ident.fingerprint, ident.device_uuid)
    now[0] = 29.0
    assert await checks.accepted(ident.fingerprint, ident.device_uuid)
    assert counting.reads == 1
    now[0] = 31.0
    assert await checks.accepted(ident.fingerprint, ident.device_uuid)
    assert counting.reads == 2
    await checks.close()


class GatedStore:
    """The real store, whose read waits for ``release`` after saying it has begun."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.begun = asyncio.Event()
        self.release = asyncio.Event()

    @contextlib.asynccontextmanager
    async def tx(self, **kw: Any) -> AsyncIterator[Any]:
        self.begun.set()
        await self.release.wait()
        async with self._store.tx(**kw) as tx:
            yield tx


async def test_a_revocation_during_a_lookup_is_not_remembered_as_accepted(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str], password: str
) -> None:
    ident, _ = await enrolled(service, new_csr, password)
    gated = GatedStore(store)
    checks = SessionChecks(gated)  # type: ignore[arg-type]
    pending = asyncio.ensure_future(checks.accepted(ident.fingerprint, ident.device_uuid))
    await asyncio.wait_for(gated.begun.wait(), 10)
    checks.forget(ident.fingerprint)  # what reject/delete call, while the lookup runs
    gated.release.set()
    assert await pending  # answered from the row it read...
    assert ident.fingerprint not in checks._accepted  # ...but not remembered
    await checks.close()
