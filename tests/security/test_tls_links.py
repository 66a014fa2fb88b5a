"""TLS on the agent link, both directions, with real sockets on 127.0.0.1.

Each refusal is followed by a check that a legitimate enrolled agent still works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from hwfleet.trust import (
    AgentIdentity,
    CertificateAuthority,
    FirstContactError,
    enrolled_context,
    first_contact_context,
    server_context,
    verify_first_contact,
)


def client_context(ca_pem: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca_pem is None:
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=ca_pem)
    return ctx


@contextlib.asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    """A server that says hello and closes; what matters is the certificate it presents."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"welcome": "impostor"}\n')
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def impostor_context(
    tmp: Any, name: str = "impostor"
) -> tuple[CertificateAuthority, ssl.SSLContext]:
    """A complete controller-like TLS endpoint under a CA of its own."""
    ca = CertificateAuthority.load_or_create(tmp / name)
    return ca, server_context(ca, ca.issue_server_cert(["127.0.0.1"]))


async def first_contact(port: int, expected: str | None) -> ssl.SSLObject:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=first_contact_context(expected)
    )
    ssl_object = writer.get_extra_info("ssl_object")
    await reader.readline()
    writer.close()
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        await writer.wait_closed()
    return ssl_object  # getpeercert() still answers after close


async def test_contexts_require_tls12_or_better(env: Any) -> None:
    agent = await env.enrolled_agent()
    for ctx in (env.server.context, first_contact_context(), enrolled_context(agent.identity)):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert env.server.context.verify_mode == ssl.CERT_OPTIONAL
    assert enrolled_context(agent.identity).verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("key_type", ["ed25519", "p256"])
async def test_enrolled_client_is_identified(env: Any, key_type: str) -> None:
    agent = env.agent("a")
    agent.identity = AgentIdentity.load_or_create(
        env.tmp / f"k-{key_type}", agent.identity.uuid, key_type=key_type
    )
    await agent.enroll(env.server.port, password=env.password)
    assert await agent.connect(env.server.port) == f"welcome:{agent.identity.uuid}"
    assert env.server.greeted == [agent.identity.uuid]


async def test_rsa3072_client_is_identified(env: Any) -> None:
    # The agent generates Ed25519/P-256 keys; an RSA-3072 key placed by hand works too.
    directory = env.tmp / "rsa"
    AgentIdentity.load_or_create(directory, "7d6f6a56-3bde-4c1b-9f59-2c1b0d7f0a11")
    pki = directory / "pki"
    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    (pki / "agent.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (pki / "agent.json").unlink()
    agent = env.agent("rsa", "7d6f6a56-3bde-4c1b-9f59-2c1b0d7f0a11")
    reply = await agent.enroll(env.server.port, password=env.password)
    assert reply["result"]["state"] == "accepted"
    assert await agent.connect(env.server.port) == f"welcome:{agent.identity.uuid}"


async def test_certificate_from_another_ca_fails_the_handshake(env: Any) -> None:
    good = await env.enrolled_agent()
    rogue_ca = CertificateAuthority.load_or_create(env.tmp / "rogue-ca")
    rogue = env.agent("rogue")
    rogue.identity.save_certificate(
        rogue_ca.sign_csr(rogue.identity.csr_pem(), rogue.identity.uuid), rogue_ca.ca_pem
    )
    # The rogue trusts the real server (isolating the server's check) and shows its cert.
    ctx = client_context(env.ca.ca_pem)
    ctx.load_cert_chain(rogue.identity.cert_path, rogue.identity.key_path)
    verdict = await env.probe(ctx)
    assert verdict.startswith("failed:") or verdict == "closed", verdict
    assert "anonymous" not in verdict and rogue.identity.uuid not in env.server.greeted
    assert await good.connect(env.server.port) == f"welcome:{good.identity.uuid}"


async def test_server_certificate_as_client_certificate_fails(env: Any) -> None:
    # Right CA, wrong purpose: the gateway's own certificate is not a device identity.
    paths = env.ca.issue_server_cert(["127.0.0.1"])
    ctx = client_context(env.ca.ca_pem)
    ctx.load_cert_chain(paths.cert, paths.key)
    verdict = await env.probe(ctx)
    assert verdict.startswith("failed:") or verdict == "closed", verdict


async def test_no_client_certificate_connects_but_has_no_identity(env: Any) -> None:
    good = await env.enrolled_agent()
    assert await env.probe(client_context(env.ca.ca_pem)) == "anonymous"
    assert env.server.greeted == []
    assert await good.connect(env.server.port) == f"welcome:{good.identity.uuid}"


async def test_plaintext_on_the_agent_port_gets_no_result(env: Any) -> None:
    good = await env.enrolled_agent()
    reader, writer = await asyncio.open_connection("127.0.0.1", env.server.port)
    writer.write(b'{"version": "1", "id": "x", "method": "ping", "params": {}}\n')
    await writer.drain()
    async with asyncio.timeout(10):
        data = await reader.read()  # the server closes; nothing it sends is a reply
    writer.close()
    assert b"result" not in data and b"welcome" not in data and b"anonymous" not in data
    assert await good.connect(env.server.port) == f"welcome:{good.identity.uuid}"


async def test_first_contact_accepts_the_real_controller(env: Any) -> None:
    ssl_object = await first_contact(env.server.port, env.ca.fingerprint())
    assert verify_first_contact(ssl_object, env.ca.ca_pem, env.ca.fingerprint()) == (
        env.ca.fingerprint()
    )
    # Without --controller-fingerprint: trust on first use, still chain-checked.
    assert verify_first_contact(ssl_object, env.ca.ca_pem, None) == env.ca.fingerprint()
    # The operator may paste the fingerprint in another spelling.
    bare = env.ca.fingerprint().removeprefix("SHA256:").replace(":", "").upper()
    assert verify_first_contact(ssl_object, env.ca.ca_pem, bare) == env.ca.fingerprint()


async def test_first_contact_refuses_an_impostor(env: Any) -> None:
    impostor_ca, ctx = impostor_context(env.tmp)
    async with tls_server(ctx) as port:
        ssl_object = await first_contact(port, None)
    # A relay: it presents its own certificate but forwards the real controller's CA.
    with pytest.raises(FirstContactError, match="not issued by the CA it sent"):
        verify_first_contact(ssl_object, env.ca.ca_pem, None)
    # A complete impostor: consistent with itself, but not the expected fingerprint.
    with pytest.raises(FirstContactError, match="does not match the expected"):
        verify_first_contact(ssl_object, impostor_ca.ca_pem, env.ca.fingerprint())


async def test_first_contact_refuses_a_device_posing_as_the_controller(env: Any) -> None:
    device = await env.enrolled_agent("device")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(device.identity.cert_path, device.identity.key_path)
    async with tls_server(ctx) as port:
        ssl_object = await first_contact(port, None)
    with pytest.raises(FirstContactError, match="not a controller certificate"):
        verify_first_contact(ssl_object, env.ca.ca_pem, env.ca.fingerprint())


async def test_first_contact_refuses_garbage_and_non_ca(env: Any) -> None:
    ssl_object = await first_contact(env.server.port, None)
    with pytest.raises(FirstContactError, match="no usable CA"):
        verify_first_contact(ssl_object, "not a pem", None)
    leaf = env.ca.issue_server_cert(["127.0.0.1"]).cert.read_text()
    with pytest.raises(FirstContactError, match="not a CA"):
        verify_first_contact(ssl_object, leaf, None)
    with pytest.raises(ValueError, match="not a SHA-256 fingerprint"):
        first_contact_context("SHA256:12:34")


async def test_full_enrollment_refuses_impostor_with_expected_fingerprint(env: Any) -> None:
    # The enroll.hello step means the password is never sent to the impostor.
    _, ctx = impostor_context(env.tmp)
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'{"anonymous": true}\n')
        await writer.drain()
        while line := await reader.readline():
            seen.append(line)
            # Relay the real CA so the chain check (not the fingerprint) is what catches it.
            reply = {"result": {"ca": env.ca.ca_pem, "ca_fingerprint": env.ca.fingerprint()}}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    agent = env.agent("victim")
    try:
        with pytest.raises(FirstContactError):
            await agent.enroll(
                port, password=env.password, expected_fingerprint=env.ca.fingerprint()
            )
    finally:
        server.close()
        await server.wait_closed()
    assert all(env.password.encode() not in line for line in seen)
    assert not agent.identity.is_enrolled


async def test_enrolled_agent_refuses_an_impostor_controller(env: Any) -> None:
    agent = await env.enrolled_agent()
    _, ctx = impostor_context(env.tmp)
    async with tls_server(ctx) as port:
        verdict = await agent.connect(port)
    assert verdict.startswith("failed:SSLCertVerificationError"), verdict
    assert await agent.connect(env.server.port) == f"welcome:{agent.identity.uuid}"


async def test_enrolled_agent_refuses_a_device_posing_as_the_controller(env: Any) -> None:
    agent = await env.enrolled_agent("victim")
    neighbour = await env.enrolled_agent("neighbour")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(neighbour.identity.cert_path, neighbour.identity.key_path)
    async with tls_server(ctx) as port:
        verdict = await agent.connect(port)
    assert verdict.startswith("failed:SSLCertVerificationError"), verdict
    assert "purpose" in verdict
