"""The agent's own RabbitMQ user: asked of the controller, kept in ``<data-dir>/pki/bus.json``.

A controller started with ``--bus-credentials`` gives each enrolled AMQP
device a user of its own (``hwfleet-device-<uuid>``): in the ``enroll`` reply
when the device enrolls with ``transport: "amqp"``, or — for a device enrolled
before — through ``bus.credentials`` on a mutual-TLS connection. The file is
0600 (written atomically, like the keys beside it) and the password is never
logged. A controller without per-device credentials answers ``not_found``:
the agent then uses the credentials of its ``--bus`` URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

from hwfleet.agent.links.enroll import ensure_enrolled
from hwfleet.protocol.errors import ErrorCode, RemoteError
from hwfleet.protocol.framing import STREAM_LIMIT
from hwfleet.protocol.methods import MethodRegistry
from hwfleet.protocol.session import Session
from hwfleet.protocol.stream import StreamChannel, pump
from hwfleet.trust import BUS_CREDENTIALS, AgentIdentity, enrolled_context
from hwfleet.trust.files import PKI_DIR, read_text, write_private
from hwfleet.trust.identity import AGENT_CERT

log = logging.getLogger(__name__)

CREDENTIALS_FILE = "bus.json"


class BusCredentials(NamedTuple):
    """A device's own bus user; ``repr`` hides the password."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"BusCredentials(username={self.username!r}, password=<hidden>)"

    def __str__(self) -> str:
        return self.__repr__()


def wants_own_credentials(data_dir: str | Path, *, password: str = "", token: str = "") -> bool:
    """Whether an AMQP agent should ask the controller for its own bus user.

    It does once it is enrolled (or holds credentials), or when it can enroll
    (an enrollment password or token); otherwise it uses the bus URL as given.
    """
    pki = Path(data_dir) / PKI_DIR
    return bool(
        password or token or (pki / AGENT_CERT).exists() or (pki / CREDENTIALS_FILE).exists()
    )


def load(identity: AgentIdentity) -> BusCredentials | None:
    text = read_text(identity.directory / CREDENTIALS_FILE)
    if text is None:
        return None
    try:
        data = json.loads(text)
        return BusCredentials(str(data["username"]), str(data["password"]))
    except (ValueError, KeyError, TypeError):
        log.warning("%s is unreadable: asking for new bus credentials", CREDENTIALS_FILE)
        return None


def save(identity: AgentIdentity, credentials: BusCredentials) -> None:
    body = {"username": credentials.username, "password": credentials.password}
    write_private(identity.directory / CREDENTIALS_FILE, json.dumps(body).encode())


def forget(identity: AgentIdentity) -> None:
    (identity.directory / CREDENTIALS_FILE).unlink(missing_ok=True)


def with_credentials(url: str, credentials: BusCredentials) -> str:
    """``url`` with its user info replaced by ``credentials``."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    userinfo = f"{quote(credentials.username, safe='')}:{quote(credentials.password, safe='')}"
    return urlunsplit((parts.scheme, f"{userinfo}@{host}{port}", parts.path, parts.query, ""))


def _from_reply(reply: dict[str, Any]) -> BusCredentials | None:
    username, password = reply.get("bus_username"), reply.get("bus_password")
    if isinstance(username, str) and isinstance(password, str) and username and password:
        return BusCredentials(username, password)
    return None


async def _ask_enrolled(
    identity: AgentIdentity, host: str, port: int, local_address: str | None, timeout: float
) -> dict[str, Any]:
    """``bus.credentials`` over mutual TLS with the pinned controller CA."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(
            host,
            port,
            ssl=enrolled_context(identity),
            limit=STREAM_LIMIT,
            local_addr=(local_address, 0) if local_address else None,
        )
    channel = StreamChannel(writer)
    session: Session[None] = Session(channel.send, MethodRegistry(), None, peer=f"{host}:{port}")
    reading = asyncio.create_task(pump(reader, session))
    try:
        return await session.call(BUS_CREDENTIALS, {}, timeout)
    finally:
        session.close()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
        with contextlib.suppress(Exception):
            await channel.close()


async def obtain(
    identity: AgentIdentity,
    host: str,
    port: int,
    *,
    password: str = "",
    token: str = "",
    expected_fingerprint: str | None = None,
    local_address: str | None = None,
    timeout: float = 30.0,
) -> BusCredentials | None:
    """Ask the controller for this device's bus user (enrolling first if needed); store it.

    None: the controller does not provision per-device users. Raises what
    enrollment raises (refusal, pending, a wrong controller) and OSError.
    """
    reply = await ensure_enrolled(
        identity,
        host,
        port,
        password=password,
        token=token,
        expected_fingerprint=expected_fingerprint,
        local_address=local_address,
        timeout=timeout,
        transport="amqp",
    )
    if reply is None:
        try:
            reply = await _ask_enrolled(identity, host, port, local_address, timeout)
        except RemoteError as exc:
            if exc.code in (ErrorCode.NOT_FOUND, ErrorCode.UNKNOWN_METHOD):
                reply = {}
            else:
                raise
    credentials = _from_reply(reply)
    if credentials is None:
        log.info("the controller gives no per-device bus credentials: using the bus URL's")
        return None
    save(identity, credentials)
    log.info("got bus user %s from the controller", credentials.username)
    return credentials
