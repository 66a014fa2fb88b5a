"""Attacks on the device admin listener (seed 004 direct access), over real TLS on 127.0.0.1.

Nothing runs before a login; a signature is good for one nonce and one device
certificate only; guessing the device password is rate-limited before anything
is compared; the password never reaches a log line or a reply; a peer that does
not log in is cut off; a key taken off the trust list ends its session.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from tests.unit.agent.agent_kit import sim_runtime

from hwfleet.agent.access.admin_listener import AdminListener
from hwfleet.agent.access.adminpass import AdminPassword
from hwfleet.agent.access.trustlist import TrustList
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.protocol.errors import RemoteError, SessionClosedError
from hwfleet.protocol.methods import MethodRegistry
from hwfleet.protocol.session import Session
from hwfleet.protocol.stream import StreamChannel, pump
from hwfleet.trust import AgentIdentity, RateLimiter
from hwfleet.trust.device_client import connect_device
from hwfleet.trust.deviceauth import challenge, public_key_pem, sign
from hwfleet.trust.tls import FirstContactError, device_client_context

PASSWORD = "the-device-password-93b1"
OTHER_DEVICE = "SHA256:" + ":".join(["c3"] * 32)


@dataclass
class Device:
    runtime: AgentRuntime
    listener: AdminListener


@pytest.fixture
async def device(tmp_path: Path) -> AsyncIterator[Device]:
    rt = sim_runtime(tmp_path)
    await AdminPassword(rt.local).change("", PASSWORD)
    identity = AgentIdentity.load_or_create(tmp_path, rt.info.uuid)
    listener = AdminListener(
        rt,
        identity,
        host="127.0.0.1",
        port=0,
        login_timeout=5.0,
        limiter=RateLimiter(rate=1 / 3600, burst=3),
    )
    await listener.start()
    try:
        yield Device(rt, listener)
    finally:
        await listener.close()


@dataclass
class Raw:
    """A client that speaks the protocol but follows none of the rules."""

    session: Session[None]
    reading: asyncio.Task[None]
    cert_der: bytes

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.session.call(method, params or {}, timeout=5)


@pytest.fixture
async def raw(device: Device) -> AsyncIterator[Raw]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", device.listener.port, ssl=device_client_context()
    )
    channel = StreamChannel(writer)
    session: Session[None] = Session(channel.send, MethodRegistry(), None, peer="raw")
    reading = asyncio.create_task(pump(reader, session))
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    try:
        yield Raw(session, reading, der)
    finally:
        session.close()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        await channel.close()


async def login(device: Device, key: ed25519.Ed25519PrivateKey, password: str = "") -> Any:
    return await connect_device(
        "127.0.0.1",
        device.listener.port,
        key=key,
        device_fingerprint=device.listener.device_fingerprint,
        password=password,
    )


async def test_no_command_runs_before_login(device: Device, raw: Raw) -> None:
    name = device.runtime.info.name
    for method in device.runtime.registry.names():
        with pytest.raises(RemoteError) as refused:
            await raw.call(method, {"new_name": "owned", "new_password": "x" * 12})
        assert refused.value.code == "unauthorized", method
    with pytest.raises(RemoteError) as no_nonce:
        await raw.call("device.auth.login", {"public_key": "x", "signature": "x"})
    assert "device.auth.hello first" in no_nonce.value.msg
    assert device.runtime.info.name == name
    assert await AdminPassword(device.runtime.local).check(PASSWORD)


async def test_a_signature_is_good_for_one_nonce_and_one_certificate(
    device: Device, raw: Raw
) -> None:
    from hwfleet.trust import fingerprints

    key = ed25519.Ed25519PrivateKey.generate()
    pem = public_key_pem(key)
    trusted = (await login(device, key, PASSWORD)).access_id  # the key is now trusted
    # A relay terminating TLS with its own certificate: the client signed that one.
    nonce = base64.b64decode((await raw.call("device.auth.hello"))["nonce"])
    relayed = sign(key, challenge(nonce, OTHER_DEVICE, trusted))
    with pytest.raises(RemoteError) as relay:
        await raw.call("device.auth.login", {"public_key": pem, "signature": relayed})
    assert relay.value.code == "unauthorized" and "does not verify" in relay.value.msg
    # A good signature replayed after a new hello: the nonce changed.
    nonce = base64.b64decode((await raw.call("device.auth.hello"))["nonce"])
    good = sign(key, challenge(nonce, fingerprints.of_der(raw.cert_der), trusted))
    await raw.call("device.auth.hello")
    with pytest.raises(RemoteError) as replay:
        await raw.call("device.auth.login", {"public_key": pem, "signature": good})
    assert replay.value.code == "unauthorized"
    # ...and is refused even on the nonce it was made for, once that nonce was used up.
    with pytest.raises(RemoteError):
        await raw.call("device.auth.login", {"public_key": pem, "signature": good})


async def test_guessing_is_limited_before_the_password_is_compared(device: Device) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    for guess in range(3):
        with pytest.raises(RemoteError) as wrong:
            await login(device, key, f"guess-number-{guess}")
        assert wrong.value.code == "unauthorized"
    with pytest.raises(RemoteError) as limited:
        await login(device, key, PASSWORD)  # right, but the source has used up its tries
    assert limited.value.code == "refused" and "too many failed logins" in limited.value.msg
    assert len(TrustList(device.runtime.local).entries()) == 0


async def test_parallel_guesses_cannot_outrun_the_budget(device: Device) -> None:
    async def guess(number: int) -> str:
        try:
            await login(device, ed25519.Ed25519PrivateKey.generate(), f"parallel-guess-{number}")
        except RemoteError as exc:
            return exc.code
        return "admitted"

    codes = await asyncio.gather(*(guess(n) for n in range(8)))
    assert sorted(codes) == ["refused"] * 5 + ["unauthorized"] * 3  # burst 3: three compared


async def test_a_device_without_a_password_admits_nobody_by_password(tmp_path: Path) -> None:
    rt = sim_runtime(tmp_path)
    identity = AgentIdentity.load_or_create(tmp_path, rt.info.uuid)
    listener = AdminListener(rt, identity, host="127.0.0.1", port=0)
    await listener.start()
    try:
        for attempt in ("", "anything-at-all"):
            with pytest.raises(RemoteError) as refused:
                await login(Device(rt, listener), ed25519.Ed25519PrivateKey.generate(), attempt)
            assert refused.value.code == "unauthorized"
    finally:
        await listener.close()


async def test_the_password_never_reaches_a_log_or_a_reply(
    device: Device, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-password-that-must-not-leak"
    with pytest.raises(RemoteError) as refused:
        await login(device, ed25519.Ed25519PrivateKey.generate(), wrong)
    assert wrong not in str(refused.value)
    connection = await login(device, ed25519.Ed25519PrivateKey.generate(), PASSWORD)
    await connection.close()
    logged = [record.getMessage() for record in caplog.records]
    assert any("logged in by password" in line for line in logged)
    for secret in (wrong, PASSWORD):
        assert all(secret not in line for line in logged)


async def test_a_peer_that_does_not_log_in_is_cut_off(tmp_path: Path, deadline: float) -> None:
    rt = sim_runtime(tmp_path)
    identity = AgentIdentity.load_or_create(tmp_path, rt.info.uuid)
    listener = AdminListener(rt, identity, host="127.0.0.1", port=0, login_timeout=0.3)
    await listener.start()
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", listener.port, ssl=device_client_context()
        )
        async with asyncio.timeout(deadline):
            assert await reader.read() == b""  # EOF: the device closed it
        writer.close()
    finally:
        await listener.close()


async def test_the_client_checks_the_device_before_sending_the_password(device: Device) -> None:
    with pytest.raises(FirstContactError, match="not the expected"):
        await connect_device(
            "127.0.0.1",
            device.listener.port,
            key=ed25519.Ed25519PrivateKey.generate(),
            device_fingerprint=OTHER_DEVICE,
            password=PASSWORD,
        )
    assert device.listener.limited("127.0.0.1") == 0  # no login was even attempted


async def test_a_key_taken_off_the_list_by_hand_ends_its_session(device: Device) -> None:
    connection = await login(device, ed25519.Ed25519PrivateKey.generate(), PASSWORD)
    assert (await connection.call("status"))["name"]
    TrustList(device.runtime.local)._save([])  # an edit behind the agent's back
    with pytest.raises((RemoteError, SessionClosedError)):
        await connection.call("status")
    await connection.wait_closed()
    assert connection.closed


async def test_the_agent_setting_serves_the_listener(tmp_path: Path) -> None:
    from hwfleet.agent.main import admin_listening
    from hwfleet.settings import AgentSettings

    rt = sim_runtime(tmp_path)
    await AdminPassword(rt.local).change("", PASSWORD)
    settings = AgentSettings(data_dir=str(tmp_path), admin_listen="127.0.0.1:0")
    async with admin_listening(settings, rt) as listener:
        assert listener is not None
        connection = await login(
            Device(rt, listener), ed25519.Ed25519PrivateKey.generate(), PASSWORD
        )
        assert connection.admitted_by == "password"
        await connection.close()
    async with admin_listening(AgentSettings(data_dir=str(tmp_path)), rt) as off:
        assert off is None  # off unless asked for


async def test_a_damaged_trust_list_refuses_instead_of_crashing(device: Device) -> None:
    connection = await login(device, ed25519.Ed25519PrivateKey.generate(), PASSWORD)
    path = device.runtime.local.path("trusted-controllers.json")
    assert path is not None
    path.write_text("{ not json")
    with pytest.raises(RemoteError) as refused:
        await connection.call("status")
    assert refused.value.code == "refused" and "not valid JSON" in refused.value.msg
    path.unlink()
    with pytest.raises((RemoteError, SessionClosedError)):
        await connection.call("status")  # fixed by emptying it: the key is gone, so is the session
    await connection.close()
