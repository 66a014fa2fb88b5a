"""Attacks on enrollment over real TLS: guessing, replay, uuid theft, revocation, leaks.

Every case asserts the refusal and that the legitimate device kept working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from typing import Any

import pytest

from hwfleet.trust import enrolled_context, first_contact_context


class Line:
    """One anonymous TLS connection speaking the test server's line protocol."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Line:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=first_contact_context()
        )
        assert json.loads(await reader.readline()) == {"anonymous": True}
        return cls(reader, writer)

    async def call(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writer.write(json.dumps(obj).encode() + b"\n")
        await self.writer.drain()
        reply: dict[str, Any] = json.loads(await self.reader.readline())
        return reply

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def keys(env: Any) -> list[Any]:
    async with env.store.tx() as tx:
        return await tx.keys.list()


async def test_a_thousand_wrong_passwords_are_rate_limited_and_enroll_nothing(
    env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = await env.enrolled_agent()
    attacker = env.agent("attacker")
    csr = attacker.identity.csr_pem()
    line = await Line.open(env.server.port)
    codes: dict[str, int] = {}
    guesses = [f"guess-{n:04d}-{env.password[:4]}" for n in range(1000)]
    try:
        async with asyncio.timeout(120):
            for guess in guesses:
                params = {"uuid": attacker.identity.uuid, "csr": csr, "password": guess}
                reply = await line.call({"method": "enroll", "params": params})
                assert "result" not in reply
                msg = reply["error"]["msg"]
                kind = "limited" if "too many failed" in msg else "wrong"
                codes[kind] = codes.get(kind, 0) + 1
                assert guess not in msg
            # Even the right password is now refused from this source.
            right = {"uuid": attacker.identity.uuid, "csr": csr, "password": env.password}
            reply = await line.call({"method": "enroll", "params": right})
            assert "too many failed" in reply["error"]["msg"]
    finally:
        await line.close()
    assert codes == {"wrong": 10, "limited": 990}
    assert [k.device_uuid for k in await keys(env)] == [good.identity.uuid]
    assert not any(g in caplog.text for g in guesses)
    assert env.password not in caplog.text
    assert await good.connect(env.server.port) == f"welcome:{good.identity.uuid}"


async def test_no_secret_reaches_a_log_line_or_an_error(
    env: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = await env.service.create_token(ttl=300)
    agent = env.agent("a")
    ok = await agent.enroll(env.server.port, token=token)
    assert ok["result"]["state"] == "accepted"
    other = env.agent("b")
    near_miss = env.password + "!"
    replies = [
        await other.enroll(env.server.port, password=near_miss),
        await other.enroll(env.server.port, token=token),  # replay
        await other.enroll(env.server.port, token="hwfe_" + "A" * 43),
    ]
    for reply in replies:
        assert "error" in reply
        text = json.dumps(reply)
        assert near_miss not in text and token not in text and env.password not in text
    for secret in (token, near_miss, env.password, "hwfe_" + "A" * 43):
        assert secret not in caplog.text
    for record in caplog.records:
        assert token not in str(record.args) and env.password not in str(record.args)
    # Nor is the CA's or an agent's private key ever logged.
    ca_key = (env.ca.directory / "ca.key").read_text().splitlines()[1]
    assert ca_key not in caplog.text
    assert "refused" in caplog.text, "refusals are logged (without the secret)"


async def test_used_token_replayed_is_refused(env: Any) -> None:
    token = await env.service.create_token(ttl=300)
    first = env.agent("first")
    assert (await first.enroll(env.server.port, token=token))["result"]["state"] == "accepted"
    thief = env.agent("thief")
    reply = await thief.enroll(env.server.port, token=token)
    assert reply["error"]["code"] == "unauthorized"
    assert not thief.identity.is_enrolled
    assert {k.device_uuid for k in await keys(env)} == {first.identity.uuid}
    assert await first.connect(env.server.port) == f"welcome:{first.identity.uuid}"


async def test_device_claiming_another_devices_uuid_is_denied(env: Any) -> None:
    victim = await env.enrolled_agent("victim")
    impostor = env.agent("impostor", victim.identity.uuid)
    reply = await impostor.enroll(env.server.port, password=env.password)
    assert reply["error"]["code"] == "refused"
    assert "already has an accepted key" in reply["error"]["msg"]
    states = sorted(k.state for k in await keys(env))
    assert states == ["accepted", "denied"]
    assert (f"enrollment.denied.{victim.identity.uuid}") in [key for key, _ in env.events]
    assert not impostor.identity.is_enrolled
    assert await victim.connect(env.server.port) == f"welcome:{victim.identity.uuid}"


async def test_revoked_device_is_disconnected_at_once_and_refused(env: Any) -> None:
    doomed = await env.enrolled_agent("doomed")
    bystander = await env.enrolled_agent("bystander")
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", env.server.port, ssl=enrolled_context(doomed.identity)
    )
    assert json.loads(await reader.readline()) == {"welcome": doomed.identity.uuid}
    writer.write(b"ping\n")
    assert json.loads(await reader.readline()) == {"echo": "ping"}
    [key] = [k for k in await keys(env) if k.device_uuid == doomed.identity.uuid]
    await env.service.delete(key.id)
    async with asyncio.timeout(10):
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            assert await reader.read() == b"", "the live session was dropped"
    writer.close()
    assert await doomed.connect(env.server.port) == "fatal:key not accepted"
    assert await bystander.connect(env.server.port) == f"welcome:{bystander.identity.uuid}"


async def test_rejected_device_is_refused(env: Any) -> None:
    device = await env.enrolled_agent("device")
    [key] = await keys(env)
    await env.service.reject(key.id)
    assert await device.connect(env.server.port) == "fatal:key not accepted"
    again = await device.enroll(env.server.port, password=env.password)
    assert "rejected" in again["error"]["msg"]


async def test_unknown_uuid_strings_and_oversized_fields_are_refused(env: Any) -> None:
    line = await Line.open(env.server.port)
    try:
        agent = env.agent("x")
        csr = agent.identity.csr_pem()
        bad_uuid = await line.call(
            {"method": "enroll", "params": {"uuid": "x" * 10, "csr": csr, "password": "p"}}
        )
        assert bad_uuid["error"]["code"] == "bad_params"
        huge = await line.call(
            {
                "method": "enroll",
                "params": {"uuid": str(uuid.uuid4()), "csr": csr, "password": "p" * 5000},
            }
        )
        assert huge["error"]["code"] == "bad_params"
        assert "p" * 100 not in huge["error"]["msg"], "the refused value is not echoed"
    finally:
        await line.close()
    assert await keys(env) == []
