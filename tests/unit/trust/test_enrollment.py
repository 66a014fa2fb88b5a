"""Enrollment rules against the real store (SQLite): every state transition of DESIGN §6."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509

from hwfleet.protocol.errors import ErrorCode, MethodError
from hwfleet.store import Store
from hwfleet.trust import (
    CertificateAuthority,
    EnrollmentService,
    EnrollParams,
    KeyConflictError,
    KeyNotFoundError,
    PeerIdentity,
    RateLimiter,
)
from hwfleet.trust.csr import parse_csr


def params(csr: str, device: str, **secret: str) -> EnrollParams:
    return EnrollParams(uuid=device, csr=csr, **secret)


def identity_of(reply_cert: str, device: str) -> PeerIdentity:
    from hwfleet.trust.csr import spki_fingerprint

    cert = x509.load_pem_x509_certificate(reply_cert.encode())
    return PeerIdentity(
        device_uuid=device, fingerprint=spki_fingerprint(cert.public_key()), cert_fingerprint=""
    )


async def keys_in(store: Store) -> list[Any]:
    async with store.tx() as tx:
        return await tx.keys.list()


async def test_right_password_accepts_and_signs(
    service: EnrollmentService,
    ca: CertificateAuthority,
    store: Store,
    new_csr: Callable[..., str],
    password: str,
    recorder: Any,
) -> None:
    device = str(uuid.uuid4())
    csr = new_csr()
    reply = await service.enroll(params(csr, device, password=password), source_ip="10.0.0.5")
    assert reply.state == "accepted"
    assert reply.ca == ca.ca_pem and reply.ca_fingerprint == ca.fingerprint()
    assert reply.cert is not None
    x509.load_pem_x509_certificate(reply.cert.encode()).verify_directly_issued_by(ca.certificate)
    [key] = await keys_in(store)
    assert (key.id, key.state, key.source, key.device_uuid) == (
        reply.key_id,
        "accepted",
        "password",
        device,
    )
    assert key.fingerprint == parse_csr(csr).fingerprint
    assert key.cert_pem == reply.cert
    assert [rk for rk, _ in recorder.events] == [f"enrollment.accepted.{device}"]
    async with store.tx() as tx:
        rows = await tx.events.list()
    assert [e.routing_key for e in rows] == [f"enrollment.accepted.{device}"]
    assert await service.check_session(identity_of(reply.cert, device))
    # The reply is what travels: only the documented fields.
    assert set(reply.to_dict()) == {"state", "key_id", "cert", "ca", "ca_fingerprint"}


async def test_wrong_or_missing_secret_is_refused_and_nothing_recorded(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str]
) -> None:
    device = str(uuid.uuid4())
    with pytest.raises(MethodError) as wrong:
        await service.enroll(params(new_csr(), device, password="guess"), source_ip="10.0.0.6")
    assert wrong.value.code == ErrorCode.UNAUTHORIZED
    assert "wrong enrollment password" in wrong.value.msg
    with pytest.raises(MethodError) as missing:
        await service.enroll(params(new_csr(), device), source_ip="10.0.0.6")
    assert "needs the enrollment password" in missing.value.msg
    assert await keys_in(store) == []


async def test_empty_configured_password_disables_password_enrollment(
    store: Store, ca: CertificateAuthority, new_csr: Callable[..., str]
) -> None:
    service = EnrollmentService(store, ca, password="")
    with pytest.raises(MethodError):
        await service.enroll(params(new_csr(), str(uuid.uuid4()), password=""), source_ip="::1")
    assert await keys_in(store) == []


async def test_rate_limited_source_is_refused_even_with_the_right_password(
    store: Store, ca: CertificateAuthority, new_csr: Callable[..., str], password: str
) -> None:
    service = EnrollmentService(store, ca, password=password, limiter=RateLimiter(burst=3))
    csr, device = new_csr(), str(uuid.uuid4())
    for _ in range(3):
        with pytest.raises(MethodError, match="wrong enrollment password"):
            await service.enroll(params(csr, device, password="x"), source_ip="10.9.9.9")
    with pytest.raises(MethodError, match="too many failed enrollment attempts") as limited:
        await service.enroll(params(csr, device, password=password), source_ip="10.9.9.9")
    assert limited.value.code == ErrorCode.REFUSED
    reply = await service.enroll(params(csr, device, password=password), source_ip="10.9.9.10")
    assert reply.state == "accepted"


async def test_token_works_once_then_replay_is_refused(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str]
) -> None:
    issued = await service.issue_token(ttl=600)
    assert issued.token.startswith("hwfe_") and issued.token not in repr(issued)
    first = str(uuid.uuid4())
    reply = await service.enroll(params(new_csr(), first, token=issued.token), source_ip="10.1.1.1")
    assert reply.state == "accepted"
    with pytest.raises(MethodError, match="invalid, used or expired token"):
        await service.enroll(
            params(new_csr(), str(uuid.uuid4()), token=issued.token), source_ip="10.1.1.2"
        )
    [key] = await keys_in(store)
    assert (key.device_uuid, key.source) == (first, "token")


async def test_expired_token_is_refused(
    store: Store, ca: CertificateAuthority, new_csr: Callable[..., str]
) -> None:
    now = [dt.datetime(2030, 1, 1, tzinfo=dt.UTC)]
    service = EnrollmentService(store, ca, password="pw", clock=lambda: now[0])
    token = await service.create_token(ttl=60)
    now[0] += dt.timedelta(seconds=61)
    with pytest.raises(MethodError, match="expired token"):
        await service.enroll(
            params(new_csr(), str(uuid.uuid4()), token=token), source_ip="10.0.0.1"
        )
    assert await keys_in(store) == []


@pytest.mark.parametrize("ttl", [0, -5, 31 * 24 * 3600])
async def test_token_ttl_bounds(service: EnrollmentService, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl must be between"):
        await service.issue_token(ttl)


async def test_same_key_again_is_idempotent_without_a_secret(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str], password: str
) -> None:
    device, csr = str(uuid.uuid4()), new_csr()
    first = await service.enroll(params(csr, device, password=password), source_ip="10.0.0.1")
    again = await service.enroll(params(csr, device), source_ip="10.0.0.1")
    assert again == first
    assert len(await keys_in(store)) == 1


async def test_second_key_for_an_accepted_uuid_is_denied_with_an_event(
    service: EnrollmentService,
    store: Store,
    new_csr: Callable[..., str],
    password: str,
    recorder: Any,
) -> None:
    device = str(uuid.uuid4())
    good = await service.enroll(params(new_csr(), device, password=password), source_ip="10.0.0.1")
    intruder_csr = new_csr("p256")
    with pytest.raises(MethodError, match="already has an accepted key") as denied:
        await service.enroll(params(intruder_csr, device, password=password), source_ip="10.0.0.66")
    assert denied.value.code == ErrorCode.REFUSED
    rows = {k.fingerprint: k for k in await keys_in(store)}
    intruder = rows[parse_csr(intruder_csr).fingerprint]
    assert intruder.state == "denied" and intruder.cert_pem is None
    assert rows[identity_of(good.cert or "", device).fingerprint].state == "accepted"
    assert recorder.events[-1][0] == f"enrollment.denied.{device}"
    assert recorder.events[-1][1]["source_ip"] == "10.0.0.66"
    async with store.tx() as tx:
        assert f"enrollment.denied.{device}" in [e.routing_key for e in await tx.events.list()]
    # Retrying the denied key is refused again, without a second row.
    with pytest.raises(MethodError, match="denied"):
        await service.enroll(params(intruder_csr, device, password=password), source_ip="10.0.0.66")
    assert len(await keys_in(store)) == 2
    # The legitimate device is unaffected.
    assert await service.check_session(identity_of(good.cert or "", device))


async def test_key_registered_to_one_device_cannot_claim_another(
    service: EnrollmentService, new_csr: Callable[..., str], password: str
) -> None:
    csr = new_csr()
    await service.enroll(params(csr, str(uuid.uuid4()), password=password), source_ip="10.0.0.1")
    with pytest.raises(MethodError, match="registered to another device"):
        await service.enroll(
            params(csr, str(uuid.uuid4()), password=password), source_ip="10.0.0.1"
        )


async def test_bad_params_are_answered_with_reasons(
    service: EnrollmentService, new_csr: Callable[..., str], password: str
) -> None:
    with pytest.raises(MethodError, match="is not a UUID") as bad_uuid:
        await service.enroll(params(new_csr(), "nope", password=password), source_ip="10.0.0.1")
    assert bad_uuid.value.code == ErrorCode.BAD_PARAMS
    with pytest.raises(MethodError, match="RSA-2048") as weak:
        await service.enroll(
            params(new_csr("rsa2048"), str(uuid.uuid4()), password=password), source_ip="10.0.0.1"
        )
    assert weak.value.code == ErrorCode.BAD_PARAMS


async def test_manual_approval_pending_then_operator_accepts(
    store: Store, ca: CertificateAuthority, new_csr: Callable[..., str], recorder: Any
) -> None:
    service = EnrollmentService(
        store, ca, password="pw", manual_approval=True, events=recorder.event
    )
    device, csr = str(uuid.uuid4()), new_csr()
    reply = await service.enroll(params(csr, device), source_ip="10.0.0.1")
    assert reply.state == "pending" and reply.cert is None
    assert set(reply.to_dict()) == {"state", "key_id"}
    assert (await service.enroll(params(csr, device), source_ip="10.0.0.1")).state == "pending"
    [row] = await service.list_keys()
    assert row["state"] == "pending" and row["id"] == reply.key_id
    assert "public_key_pem" not in row and "cert_pem" not in row
    view = await service.accept(reply.key_id)
    assert view["state"] == "accepted"
    accepted = await service.enroll(params(csr, device), source_ip="10.0.0.1")
    assert accepted.state == "accepted" and accepted.cert
    assert [rk.split(".")[1] for rk, _ in recorder.events] == ["pending", "accepted"]


async def test_operator_accept_conflicts_and_unknown_ids(
    service: EnrollmentService, new_csr: Callable[..., str], password: str
) -> None:
    device = str(uuid.uuid4())
    good = await service.enroll(params(new_csr(), device, password=password), source_ip="10.0.0.1")
    with pytest.raises(MethodError):
        await service.enroll(params(new_csr(), device, password=password), source_ip="10.0.0.2")
    denied = next(k for k in await service.list_keys() if k["state"] == "denied")
    with pytest.raises(KeyConflictError, match=f"hwfleet keys delete {good.key_id}"):
        await service.accept(denied["id"])
    with pytest.raises(KeyNotFoundError):
        await service.accept("0000000000000000")
    # Deleting the old key lets the operator accept the replacement.
    await service.delete(good.key_id)
    assert (await service.accept(denied["id"]))["state"] == "accepted"
    # Keys can be addressed by full fingerprint too.
    assert (await service.reject(denied["fingerprint"]))["state"] == "rejected"


async def test_delete_and_reject_end_sessions_and_call_on_revoke(
    service: EnrollmentService, new_csr: Callable[..., str], password: str, recorder: Any
) -> None:
    a, b, csr_b = str(uuid.uuid4()), str(uuid.uuid4()), new_csr()
    reply_a = await service.enroll(params(new_csr(), a, password=password), source_ip="10.0.0.1")
    reply_b = await service.enroll(params(csr_b, b, password=password), source_ip="10.0.0.2")
    ident_a, ident_b = identity_of(reply_a.cert or "", a), identity_of(reply_b.cert or "", b)
    await service.delete(reply_a.key_id)
    assert not await service.check_session(ident_a)
    assert await service.check_session(ident_b)
    await service.reject(reply_b.key_id)
    assert not await service.check_session(ident_b)
    assert recorder.revoked == [(a, ident_a.fingerprint), (b, ident_b.fingerprint)]
    # A rejected key stays refused, even with the password.
    with pytest.raises(MethodError, match="rejected"):
        await service.enroll(params(csr_b, b, password=password), source_ip="10.0.0.2")
    # The operator rejected the key, not the uuid: a new key with the password enrolls
    # (to lock a device out for good, change the enrollment password as well).
    fresh = await service.enroll(params(new_csr(), b, password=password), source_ip="10.0.0.2")
    assert fresh.state == "accepted"


async def test_check_session_requires_the_uuid_the_key_was_enrolled_for(
    service: EnrollmentService, new_csr: Callable[..., str], password: str
) -> None:
    device = str(uuid.uuid4())
    reply = await service.enroll(params(new_csr(), device, password=password), source_ip="10.0.0.1")
    real = identity_of(reply.cert or "", device)
    assert await service.check_session(real)
    forged = PeerIdentity(str(uuid.uuid4()), real.fingerprint, "")
    assert not await service.check_session(forged)


async def test_deleted_device_reenrolls_with_the_password(
    service: EnrollmentService, new_csr: Callable[..., str], password: str
) -> None:
    device, csr = str(uuid.uuid4()), new_csr()
    first = await service.enroll(params(csr, device, password=password), source_ip="10.0.0.1")
    await service.delete(first.key_id)
    with pytest.raises(MethodError, match="needs the enrollment password"):
        await service.enroll(params(csr, device), source_ip="10.0.0.1")
    again = await service.enroll(params(csr, device, password=password), source_ip="10.0.0.1")
    assert again.state == "accepted" and again.cert != first.cert


def test_enroll_params_never_show_secrets() -> None:
    p = EnrollParams(uuid="u", csr="c", password="hunter2-secret", token="hwfe_tok_secret")
    for text in (repr(p), str(p), f"{p}"):
        assert "hunter2-secret" not in text and "hwfe_tok_secret" not in text
