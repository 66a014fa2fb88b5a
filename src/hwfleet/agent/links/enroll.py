"""First contact: check the controller, then trade the password (or token) for a certificate.

The agent verifies the controller's CA (``enroll.hello``) before it sends any
secret, pins it, and stores the signed certificate; from then on it connects
with mTLS only (:func:`hwfleet.trust.enrolled_context`). Every link calls
:func:`ensure_enrolled` before it connects: a no-op once the device has its
certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import Any

from hwfleet.errors import TrustError
from hwfleet.protocol.framing import STREAM_LIMIT
from hwfleet.protocol.methods import MethodRegistry
from hwfleet.protocol.session import Session
from hwfleet.protocol.stream import StreamChannel, pump
from hwfleet.trust import (
    ENROLL,
    ENROLL_HELLO,
    AgentIdentity,
    first_contact_context,
    verify_first_contact,
)
from hwfleet.trust.knock import BUSY, GO, KNOCK, KnockRefusedError

log = logging.getLogger(__name__)


class EnrollmentPendingError(TrustError):
    """The controller holds the request for an operator (``hwfleet keys accept``)."""


async def ensure_enrolled(
    identity: AgentIdentity,
    host: str,
    port: int,
    *,
    password: str = "",
    token: str = "",
    expected_fingerprint: str | None = None,
    local_address: str | None = None,
    timeout: float = 15.0,
    transport: str | None = None,
) -> dict[str, Any] | None:
    """Enroll unless ``identity`` already holds a certificate: the reply, or None if it did."""
    if identity.is_enrolled:
        return None
    return await enroll(
        identity,
        host,
        port,
        password=password,
        token=token,
        expected_fingerprint=expected_fingerprint,
        local_address=local_address,
        timeout=timeout,
        transport=transport,
    )


async def _knock_then_tls(
    host: str, port: int, context: ssl.SSLContext, local: tuple[str, int] | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection for enrolling, its anonymous slot asked for before TLS (issue 18).

    Raises :class:`KnockRefusedError` with the controller's reason (``retry after N s``)
    when every slot is taken: no TLS handshake was spent on the refusal. A controller
    that does not answer the knock gets a plain TLS connection.
    """
    reader, writer = await asyncio.open_connection(host, port, limit=STREAM_LIMIT, local_addr=local)
    try:
        writer.write(KNOCK)
        answer = await reader.readline()
    except OSError:
        answer = b""
    if answer == GO:
        await writer.start_tls(context, server_hostname=host)
        return reader, writer
    writer.close()
    if answer.startswith(BUSY):
        raise KnockRefusedError(answer[len(BUSY) :].decode("ascii", "replace").strip())
    log.info("controller %s:%d does not answer the enrollment knock: plain TLS", host, port)
    return await asyncio.open_connection(
        host, port, ssl=context, limit=STREAM_LIMIT, local_addr=local
    )


async def enroll(
    identity: AgentIdentity,
    host: str,
    port: int,
    *,
    password: str = "",
    token: str = "",
    expected_fingerprint: str | None = None,
    local_address: str | None = None,
    timeout: float = 15.0,
    transport: str | None = None,
) -> dict[str, Any]:
    """Enroll once; raises on refusal (RemoteError), a wrong controller, or pending.

    ``transport="amqp"`` asks for the device's own bus credentials too; the
    reply (returned) then carries ``bus_username``/``bus_password`` when the
    controller provisions them.
    """
    if not password and not token:
        log.info("no enrollment password or token: asking for operator approval")
    context = first_contact_context(expected_fingerprint or identity.pinned_ca_fingerprint)
    local = (local_address, 0) if local_address else None
    async with asyncio.timeout(timeout):
        reader, writer = await _knock_then_tls(host, port, context, local)
    channel = StreamChannel(writer)
    session: Session[None] = Session(channel.send, MethodRegistry(), None, peer=f"{host}:{port}")
    reading = asyncio.create_task(pump(reader, session))
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        hello = await session.call(ENROLL_HELLO, {}, timeout)
        pinned = verify_first_contact(
            ssl_object, str(hello["ca"]), expected_fingerprint or identity.pinned_ca_fingerprint
        )
        params: dict[str, Any] = {"uuid": identity.uuid, "csr": identity.csr_pem()}
        if password:
            params["password"] = password
        if token:
            params["token"] = token
        if transport:
            params["transport"] = transport
        reply = await session.call(ENROLL, params, timeout)
        if reply.get("state") == "pending":
            raise EnrollmentPendingError(
                f"enrollment of key {reply.get('key_id')} waits for an operator: "
                f"hwfleet keys accept {reply.get('key_id')}"
            )
        if reply.get("state") != "accepted":
            raise EnrollmentPendingError(f"unexpected enrollment answer {reply.get('state')!r}")
        verify_first_contact(ssl_object, str(reply["ca"]), pinned)
        # Off the event loop: writing and syncing the files waits on the disk, and
        # ``hwfleet sim`` runs a thousand devices on this loop (issue 18).
        await asyncio.to_thread(identity.save_certificate, str(reply["cert"]), str(reply["ca"]))
        log.info("enrolled with controller CA %s", pinned)
        return reply
    finally:
        session.close()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        with contextlib.suppress(Exception):
            await channel.close()
