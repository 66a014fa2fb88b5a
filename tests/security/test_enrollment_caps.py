"""Issue 21 Low 7 and Low 9 against a real controller (TLS gateway, SQLite, REST off-path).

* Low 7: whoever knows the enrollment password could enroll without end (2,000
  fake devices from one source). Password enrollments are capped per source
  and window, and by fleet size; tokens still admit.
* Low 9: a CSR *without a secret* naming an enrolled uuid wrote a ``denied``
  key row and an event before any secret was checked (200 rows for one victim
  from 20 sources). The secret is checked first now, and denied rows per uuid
  are bounded.

The window's clock is injected, so "after the window" is a clock step, not a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.security.test_controller_attacks import (
    BYSTANDER,
    Clock,
    Wire,
    anonymous_context,
    controller_settings,
)

from hwfleet.agent.links.enroll import enroll
from hwfleet.controller.app import Controller
from hwfleet.protocol.errors import RemoteError
from hwfleet.store import EventRecord, KeyRecord
from hwfleet.trust import AgentIdentity
from hwfleet.trust.enroll_limits import WindowCounter
from hwfleet.trust.enrollment import MAX_DENIED_PER_DEVICE

PASSWORD = "correct horse battery staple"


@contextlib.asynccontextmanager
async def controller(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[Controller, Clock]]:
    ctl = Controller(controller_settings(tmp_path / "ctl", **overrides))
    await ctl.start()
    clock = Clock()
    caps = ctl.keys.password_caps
    ctl.keys.password_counter = WindowCounter(caps.per_source, caps.window, clock=clock)
    try:
        yield ctl, clock
    finally:
        await ctl.close()


def identity(tmp_path: Path, name: str, device_uuid: str | None = None) -> AgentIdentity:
    return AgentIdentity.load_or_create(tmp_path / name, device_uuid or str(uuid.uuid4()))


async def enroll_from(
    ctl: Controller, tmp_path: Path, name: str, source: str, **secret: str
) -> AgentIdentity:
    """Enroll a new identity with the real agent code from ``source``; raises on refusal."""
    agent = identity(tmp_path, name)
    host, port = ctl.gateway.address
    await enroll(agent, host, port, local_address=source, **secret)
    return agent


async def open_wire(ctl: Controller, source: str) -> Wire:
    """A raw anonymous TLS link to the agent port from ``source`` (no hwfleet client code)."""
    host, port = ctl.gateway.address
    reader, writer = await asyncio.open_connection(
        host, port, ssl=anonymous_context(), local_addr=(source, 0)
    )
    return Wire(reader, writer)


async def rows(ctl: Controller) -> tuple[list[KeyRecord], list[EventRecord]]:
    async with ctl.store.tx(readonly=True) as tx:
        return list(await tx.keys.list()), list(await tx.events.list(limit=10_000))


async def test_password_enrollments_are_capped_per_source_and_window(tmp_path: Path) -> None:
    """Defaults: 20 per source per hour; then a refusal naming the limit and the wait."""
    async with controller(tmp_path) as (ctl, clock):
        caps = ctl.keys.password_caps
        assert (caps.per_source, caps.window) == (20, 3600.0)
        source = "127.70.0.1"
        for n in range(caps.per_source):
            await enroll_from(ctl, tmp_path, f"a{n}", source, password=PASSWORD)
        clock.now += 600
        with pytest.raises(RemoteError) as capped:
            await enroll_from(ctl, tmp_path, "over", source, password=PASSWORD)
        assert capped.value.code == "refused"
        assert "limit of 20 per 3600 s (enroll_password_per_source)" in capped.value.msg
        assert "retry in 3000 s" in capped.value.msg  # the oldest enrollment expires then
        # The cap is not a failure: the guessing limiter charged nothing.
        assert not ctl.keys.limiter.limited(source)
        # Tokens still admit from that source, and other sources still enroll by password.
        token = await ctl.keys.create_token(ttl=300)
        await enroll_from(ctl, tmp_path, "by-token", source, token=token)
        await enroll_from(ctl, tmp_path, "elsewhere", BYSTANDER, password=PASSWORD)
        # After the window, the source may enroll again.
        clock.now += 3000.5
        await enroll_from(ctl, tmp_path, "later", source, password=PASSWORD)
        keys, _ = await rows(ctl)
        assert len(keys) == caps.per_source + 3
        assert all(k.state == "accepted" for k in keys)


async def test_password_enrollment_stops_at_the_fleet_limit_tokens_do_not(
    tmp_path: Path,
) -> None:
    async with controller(tmp_path, enroll_password_fleet_limit=3) as (ctl, _):
        for n in range(3):
            await enroll_from(ctl, tmp_path, f"d{n}", f"127.71.0.{n + 1}", password=PASSWORD)
        with pytest.raises(RemoteError) as capped:
            await enroll_from(ctl, tmp_path, "fourth", "127.71.0.9", password=PASSWORD)
        assert capped.value.code == "refused"
        assert "reached 3 devices" in capped.value.msg
        assert "(enroll_password_fleet_limit)" in capped.value.msg
        assert "retry once an operator raises the limit" in capped.value.msg
        token = await ctl.keys.create_token(ttl=300)
        await enroll_from(ctl, tmp_path, "fourth-by-token", "127.71.0.9", token=token)
        keys, _ = await rows(ctl)
        assert sorted(k.state for k in keys) == ["accepted"] * 4


async def test_csr_without_secret_for_an_enrolled_uuid_writes_nothing(tmp_path: Path) -> None:
    """The issue's attack: 20 sources, fresh keys naming the victim, no secret."""
    async with controller(tmp_path) as (ctl, _):
        victim = await enroll_from(ctl, tmp_path, "victim", BYSTANDER, password=PASSWORD)
        keys_before, events_before = await rows(ctl)
        verdicts: dict[str, int] = {}
        for source in range(20):
            peer = await open_wire(ctl, f"127.72.0.{source + 1}")
            try:
                for attempt in range(ctl.keys.limiter.burst + 1):
                    thief = identity(tmp_path / "thieves", f"{source}-{attempt}", victim.uuid)
                    params = {"uuid": victim.uuid, "csr": thief.csr_pem()}
                    reply = await peer.call("enroll", params)
                    msg = reply["error"]["msg"]
                    verdict = "limited" if "too many failed" in msg else reply["error"]["code"]
                    verdicts[verdict] = verdicts.get(verdict, 0) + 1
                    # Nothing tells a secret-less caller that the uuid is enrolled.
                    assert "accepted key" not in msg and victim.uuid not in msg
            finally:
                await peer.close()
        assert verdicts == {"unauthorized": 20 * 10, "limited": 20}
        keys_after, events_after = await rows(ctl)
        assert keys_after == keys_before
        assert events_after == events_before


async def test_denied_rows_per_uuid_are_bounded_even_with_the_password(tmp_path: Path) -> None:
    async with controller(tmp_path) as (ctl, _):
        victim = await enroll_from(ctl, tmp_path, "victim", BYSTANDER, password=PASSWORD)
        host, port = ctl.gateway.address
        for n in range(MAX_DENIED_PER_DEVICE + 4):
            thief = identity(tmp_path / "thieves", str(n), victim.uuid)
            with pytest.raises(RemoteError, match="already has an accepted key"):
                await enroll(
                    thief, host, port, password=PASSWORD, local_address=f"127.73.0.{n + 1}"
                )
        keys, events = await rows(ctl)
        mine = [k for k in keys if k.device_uuid == victim.uuid]
        assert sorted(k.state for k in mine) == ["accepted"] + ["denied"] * MAX_DENIED_PER_DEVICE
        denials = [e for e in events if e.routing_key == f"enrollment.denied.{victim.uuid}"]
        assert len(denials) == MAX_DENIED_PER_DEVICE
