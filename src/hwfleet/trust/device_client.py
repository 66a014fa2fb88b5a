"""A client of a device's admin listener: what a second controller uses to reach a device.

:func:`connect_device` opens TLS to the listener, checks the device's key
against the fingerprint the caller expects (``hwfleet keys list`` at the
device's own controller shows it; discovery metadata carries it too), then
logs in (:mod:`hwfleet.trust.deviceauth`) as seed 004 does: with the key
alone first, and only when the device answers that the key is not on its trust
list, again with the device password, which adds the key. The password is
therefore sent only to the pinned device, and only the first time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwfleet.protocol.errors import ErrorCode, RemoteError
from hwfleet.protocol.framing import STREAM_LIMIT
from hwfleet.protocol.methods import MethodRegistry
from hwfleet.protocol.session import Session
from hwfleet.protocol.stream import StreamChannel, pump
from hwfleet.trust import fingerprints
from hwfleet.trust.deviceauth import (
    AUTH_HELLO,
    AUTH_LOGIN,
    challenge,
    load_public_key,
    public_key_pem,
    sign,
)
from hwfleet.trust.tls import FirstContactError, device_client_context, verify_device

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes


@dataclass
class DeviceConnection:
    """A logged-in session to one device; ``call`` any agent method on it."""

    session: Session[None]
    uuid: str
    access_id: str
    admitted_by: str
    reading: asyncio.Task[None]
    channel: StreamChannel

    async def call(
        self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        return await self.session.call(method, params, timeout)

    @property
    def closed(self) -> bool:
        return self.session.closed

    async def wait_closed(self) -> None:
        """Return once the device has ended the session (or :meth:`close` did)."""
        await asyncio.gather(self.reading, return_exceptions=True)

    async def close(self) -> None:
        self.session.close()
        self.reading.cancel()
        await asyncio.gather(self.reading, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.channel.close()


async def connect_device(
    host: str,
    port: int,
    *,
    key: PrivateKeyTypes,
    device_fingerprint: str,
    password: str = "",
    label: str = "",
    timeout: float = 10.0,
) -> DeviceConnection:
    """Log in to a device's admin listener; raises RemoteError when the device refuses."""
    fingerprints.parse(device_fingerprint)  # a typo fails before any connection
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host, port, ssl=device_client_context(), limit=STREAM_LIMIT
        )
    channel = StreamChannel(writer)
    session: Session[None] = Session(
        channel.send, MethodRegistry(), None, peer=f"device {host}:{port}"
    )
    reading = asyncio.create_task(pump(reader, session))
    try:
        cert_fingerprint = verify_device(writer.get_extra_info("ssl_object"), device_fingerprint)
        hello = await session.call(AUTH_HELLO, {}, timeout)
        if not fingerprints.matches(device_fingerprint, str(hello.get("fingerprint", ""))):
            raise FirstContactError("the device names another key than its certificate carries")
        pem = public_key_pem(key)
        _, access_id = load_public_key(pem)

        async def login(nonce: str, with_password: bool) -> dict[str, Any]:
            message = challenge(base64.b64decode(nonce), cert_fingerprint, access_id)
            params: dict[str, Any] = {"public_key": pem, "signature": sign(key, message)}
            if with_password:
                params["password"] = password
            if label:
                params["label"] = label
            return await session.call(AUTH_LOGIN, params, timeout)

        try:
            reply = await login(str(hello["nonce"]), False)
        except RemoteError as exc:
            if not password or exc.code != ErrorCode.UNAUTHORIZED or "trust list" not in exc.msg:
                raise
            again = await session.call(AUTH_HELLO, {}, timeout)
            reply = await login(str(again["nonce"]), True)
    except BaseException:
        session.close()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        with contextlib.suppress(Exception):
            await channel.close()
        raise
    return DeviceConnection(
        session,
        str(reply["uuid"]),
        str(reply["access_id"]),
        str(reply["admitted_by"]),
        reading,
        channel,
    )


def load_or_create_client_key(path: Path) -> PrivateKeyTypes:
    """This client's private key (PEM) at ``path``, made (Ed25519, mode 0600) the first time."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from hwfleet.trust.files import write_private

    if not path.exists():
        fresh = ed25519.Ed25519PrivateKey.generate()
        pem = fresh.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(path, pem)
        return fresh
    try:
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable unencrypted private key: {exc}") from None
