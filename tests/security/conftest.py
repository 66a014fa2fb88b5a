"""A real controller-side TLS endpoint built from the trust pieces, and an agent driver for it.

``TrustServer`` is a miniature gateway: it uses ``server_context`` and
``peer_identity`` exactly as the real gateway does, greets a certificate whose
key ``check_session`` accepts, lets a certificate-less peer call ``enroll.hello``
and ``enroll`` (one JSON object per line), and drops everyone else. The
``Agent`` driver uses ``first_contact_context`` / ``verify_first_contact`` /
``enrolled_context`` as the real agent does. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hwfleet.protocol.errors import MethodError
from hwfleet.store import Store, open_store
from hwfleet.trust import (
    AgentIdentity,
    CertificateAuthority,
    EnrollmentService,
    EnrollParams,
    RateLimiter,
    enrolled_context,
    first_contact_context,
    peer_identity,
    server_context,
    verify_first_contact,
)

PASSWORD = "the-enrollment-password-7f3a9c"
LINE_LIMIT = 1 << 20


@dataclass
class TrustServer:
    service: EnrollmentService
    context: ssl.SSLContext
    host: str = "127.0.0.1"
    port: int = 0
    greeted: list[str] = field(default_factory=list)
    sessions: dict[str, asyncio.StreamWriter] = field(default_factory=dict)
    server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._serve,
            self.host,
            0,
            ssl=self.context,
            limit=LINE_LIMIT,
            ssl_handshake_timeout=5,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.sessions.values():
            writer.close()
        await self.server.wait_closed()

    def revoke(self, device_uuid: str, fingerprint: str) -> None:
        """The ``on_revoke`` hook: drop the device's session at once."""
        writer = self.sessions.pop(device_uuid, None)
        if writer is not None:
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, obj: dict[str, Any]) -> None:
        writer.write(json.dumps(obj).encode() + b"\n")
        await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            identity = peer_identity(writer.get_extra_info("ssl_object"))
            if identity is not None:
                if not await self.service.check_session(identity):
                    await self._send(writer, {"fatal_error": "key not accepted"})
                    return
                self.greeted.append(identity.device_uuid)
                self.sessions[identity.device_uuid] = writer
                await self._send(writer, {"welcome": identity.device_uuid})
                while line := await reader.readline():  # echo: a "ping" for live sessions
                    await self._send(writer, {"echo": line.decode().strip()})
                return
            await self._send(writer, {"anonymous": True})
            peer = writer.get_extra_info("peername")[0]
            while line := await reader.readline():
                request = json.loads(line)
                if request.get("method") == "enroll.hello":
                    await self._send(writer, {"result": self.service.hello()})
                    continue
                if request.get("method") != "enroll":
                    await self._send(
                        writer, {"error": {"msg": "enroll first", "code": "unauthorized"}}
                    )
                    continue
                try:
                    params = msgspec.convert(request["params"], EnrollParams)
                except msgspec.ValidationError as exc:
                    await self._send(writer, {"error": {"msg": str(exc), "code": "bad_params"}})
                    continue
                try:
                    reply = await self.service.enroll(params, source_ip=peer)
                except MethodError as exc:
                    await self._send(writer, {"error": {"msg": exc.msg, "code": exc.code}})
                else:
                    await self._send(writer, {"result": reply.to_dict()})
        except (ConnectionError, ssl.SSLError, ValueError):
            pass
        finally:
            writer.close()


class Agent:
    """Drives one agent identity against a TrustServer (or an impostor) over real TLS."""

    def __init__(self, data_dir: Path, device_uuid: str | None = None) -> None:
        self.identity = AgentIdentity.load_or_create(data_dir, device_uuid or str(uuid.uuid4()))

    @staticmethod
    async def _call(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, obj: dict[str, Any]
    ) -> dict[str, Any]:
        writer.write(json.dumps(obj).encode() + b"\n")
        await writer.drain()
        reply: dict[str, Any] = json.loads(await reader.readline())
        return reply

    async def enroll(
        self,
        port: int,
        *,
        password: str | None = None,
        token: str | None = None,
        expected_fingerprint: str | None = None,
    ) -> dict[str, Any]:
        """First contact: verify the controller before sending the secret, then enroll."""
        context = first_contact_context(expected_fingerprint)
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        try:
            assert json.loads(await reader.readline()) == {"anonymous": True}
            ssl_object = writer.get_extra_info("ssl_object")
            hello = (await self._call(reader, writer, {"method": "enroll.hello"}))["result"]
            pinned = verify_first_contact(ssl_object, hello["ca"], expected_fingerprint)
            params: dict[str, Any] = {"uuid": self.identity.uuid, "csr": self.identity.csr_pem()}
            if password is not None:
                params["password"] = password
            if token is not None:
                params["token"] = token
            reply = await self._call(reader, writer, {"method": "enroll", "params": params})
            result = reply.get("result")
            if result and result["state"] == "accepted":
                assert result["ca_fingerprint"] == pinned
                verify_first_contact(ssl_object, result["ca"], pinned)
                self.identity.save_certificate(result["cert"], result["ca"])
            return reply
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()

    async def connect(self, port: int, context: ssl.SSLContext | None = None) -> str:
        """Connect with mTLS; return the server's first line's verdict, or the failure."""
        ctx = context or enrolled_context(self.identity)
        return await probe(port, ctx)


async def probe(port: int, context: ssl.SSLContext) -> str:
    """``welcome:<uuid>`` / ``anonymous`` / ``fatal:<msg>`` / ``failed:<why>`` / ``closed``."""
    try:
        async with asyncio.timeout(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            try:
                # TLS 1.3: a refused client certificate shows up at the first read.
                line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()
    except (ssl.SSLError, ConnectionError) as exc:
        return f"failed:{type(exc).__name__}:{exc}"
    if not line:
        return "closed"
    reply = json.loads(line)
    if "welcome" in reply:
        return f"welcome:{reply['welcome']}"
    if "fatal_error" in reply:
        return f"fatal:{reply['fatal_error']}"
    return "anonymous"


@dataclass
class Env:
    ca: CertificateAuthority
    store: Store
    service: EnrollmentService
    server: TrustServer
    tmp: Path
    events: list[tuple[str, dict[str, Any]]]

    def agent(self, name: str, device_uuid: str | None = None) -> Agent:
        return Agent(self.tmp / name, device_uuid)

    async def probe(self, context: ssl.SSLContext, port: int | None = None) -> str:
        return await probe(port or self.server.port, context)

    async def enrolled_agent(self, name: str = "good") -> Agent:
        agent = self.agent(name)
        reply = await agent.enroll(self.server.port, password=PASSWORD)
        assert reply["result"]["state"] == "accepted", reply
        return agent

    @property
    def password(self) -> str:
        return PASSWORD


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    ca = CertificateAuthority.load_or_create(tmp_path / "controller")
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'hwfleet.db'}")
    events: list[tuple[str, dict[str, Any]]] = []
    service = EnrollmentService(
        store,
        ca,
        password=PASSWORD,
        limiter=RateLimiter(),
        events=lambda key, payload, _row: events.append((key, payload)),
    )
    server = TrustServer(service, server_context(ca, ca.issue_server_cert(["127.0.0.1"])))
    service.on_revoke = server.revoke
    await server.start()
    try:
        yield Env(ca, store, service, server, tmp_path, events)
    finally:
        await server.close()
        await store.close()
