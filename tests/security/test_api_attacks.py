"""Attacks on the REST API's request bodies (issues 11 §6, 21 Medium 6).

A real controller (SQLite, memory bus, TLS agent gateway, uvicorn on 127.0.0.1)
with three simulated devices. An attacker sends 200 MiB bodies — without the
token, with it, declared or chunked — from a raw socket. Each case asserts that
the refusal came before the body was read: the attacker could push only a few
MiB (what the kernel's socket buffers hold) before the controller answered and
closed, and the test process's peak memory grew by far less than the body.
Each case also asserts that the legitimate devices kept answering.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.integration.controller.conftest import (
    connected_fleet,
    controller_settings,
    running_controller,
)

from hwfleet.controller.app import Controller
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate

MIB = 1 << 20
#: What the attacker offers, and the most the controller may have taken of it.
ATTACK_BODY = 200 * MIB
ACCEPTED_AT_MOST = 32 * MIB
#: Peak memory may grow by this much at most (the bodies are 200 MiB).
PEAK_GROWTH_AT_MOST = 64 * MIB


@dataclass
class Rig:
    ctl: Controller
    fleet: SimFleet
    api: httpx.AsyncClient

    def uuids(self) -> list[str]:
        return [d.runtime.info.uuid for d in self.fleet.devices]

    async def fleet_answers(self) -> None:
        uuids = self.uuids()
        reply = await self.api.post("/api/v1/devices/ping", json={"uuids": uuids, "timeout": 5})
        assert reply.status_code == 200, reply.text
        assert {u: r["ok"] for u, r in reply.json().items()} == dict.fromkeys(uuids, True)


@pytest.fixture
async def rig(tmp_path: Path, deadline: float) -> AsyncIterator[Rig]:
    async with (
        running_controller(controller_settings(tmp_path / "controller")) as ctl,
        connected_fleet(ctl, generate(3, seed=61), 61, tmp_path, deadline) as fleet,
        httpx.AsyncClient(
            base_url=ctl.api_url,
            headers={"Authorization": f"Bearer {ctl.operator_token}"},
            timeout=30,
        ) as api,
    ):
        yield Rig(ctl, fleet, api)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


class PeakMemory:
    """This process's peak RSS growth (the controller runs in it), reset at the start."""

    def __enter__(self) -> PeakMemory:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self.start = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *_: object) -> None:
        self.growth = _status_kib("VmHWM") * 1024 - self.start


#: The status of a refusal that reached the attacker as a connection reset.
RESET = 0


@dataclass
class Outcome:
    sent: int
    status: int
    reply: bytes


async def flood(
    rig: Rig, path: str, *, token: bool, chunked: bool, total: int = ATTACK_BODY
) -> Outcome:
    """POST ``total`` bytes to ``path`` from a raw socket until the controller answers."""
    host, port = rig.ctl.api_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    headers = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    if token:
        headers.append(f"Authorization: Bearer {rig.ctl.operator_token}")
    headers.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
    writer.write(("\r\n".join(headers) + "\r\n\r\n").encode())
    chunk = b"[" + b"1," * (MIB // 2 - 1) + b"1"  # one MiB of a JSON list that never ends
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
    answer = asyncio.create_task(reader.read(65536))
    sent = 0
    try:
        while sent < total and not answer.done():
            try:
                writer.write(frame)
                # A controller that stopped reading leaves the socket full: stop pushing then.
                async with asyncio.timeout(3):
                    await writer.drain()
            except (TimeoutError, ConnectionError):
                break
            sent += len(chunk)
        try:
            async with asyncio.timeout(30):
                reply = await answer
        except ConnectionResetError:
            # The controller answered and closed with the attacker's bytes unread, so the kernel
            # reset the connection, which can discard the answer before it is read.
            reply = b""
    finally:
        answer.cancel()
        writer.close()
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else RESET
    return Outcome(sent, status, reply)


CASES = {
    "no token, declared length": ("/api/v1/devices/ping", False, False, 401),
    "no token, chunked": ("/api/v1/devices/ping", False, True, 401),
    "token, declared length": ("/api/v1/devices/ping", True, False, 413),
    "token, chunked": ("/api/v1/devices/ping", True, True, 413),
    "token, small route, chunked": ("/api/v1/keys/tokens", True, True, 413),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_huge_body_is_refused_before_it_is_read(rig: Rig, case: str) -> None:
    path, token, chunked, expected = CASES[case]
    with PeakMemory() as peak:
        outcome = await flood(rig, path, token=token, chunked=chunked)
    # A chunked sender is still pushing when the refusal comes: it may see a reset instead.
    assert outcome.status in ((expected, RESET) if chunked else (expected,)), outcome.reply[:300]
    assert outcome.sent <= ACCEPTED_AT_MOST, f"the controller took {outcome.sent} bytes"
    assert peak.growth <= PEAK_GROWTH_AT_MOST, f"peak memory grew by {peak.growth} bytes"
    if outcome.status == 413:
        body = json.loads(outcome.reply.split(b"\r\n\r\n", 1)[1])
        assert "limit" in body["detail"] and path in body["detail"]
    await rig.fleet_answers()
    assert (await rig.api.get("/healthz")).status_code == 200


async def test_a_hundred_thousand_uuid_ping_is_refused_at_once(rig: Rig) -> None:
    """Issue 21 Medium 6: 100,000 uuids (4 MB) held the API for 26 s and /healthz for 18 s."""
    uuids = [f"00000000-0000-4000-8000-{i:012d}" for i in range(100_000)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await rig.api.post("/api/v1/devices/ping", json={"uuids": uuids, "timeout": 5})
    assert reply.status_code == 413, reply.text[:300]
    assert len(reply.content) < 1000, "the refusal does not echo the request"
    assert loop.time() - started < 5
    await rig.fleet_answers()


async def test_the_largest_allowed_ping_list_leaves_the_devices_answering(rig: Rig) -> None:
    """10,000 uuids (the cap), each named twice: pinged once each, the fleet unaffected."""
    unknown = [f"00000000-0000-4000-8000-{i:012d}" for i in range(5_000 - 3)]
    uuids = [*rig.uuids(), *unknown]
    work = asyncio.create_task(
        rig.api.post("/api/v1/devices/ping", json={"uuids": uuids + uuids, "timeout": 5})
    )
    # Meanwhile the devices keep answering through the agent gateway.
    direct = await rig.ctl.devices.ping_many(rig.uuids(), timeout=5)
    assert all(r["ok"] for r in direct.values()), direct
    reply = await work
    assert reply.status_code == 200, reply.text[:300]
    result = reply.json()
    assert list(result) == uuids
    assert all(result[u]["ok"] for u in rig.uuids())
    assert {result[u]["error"] for u in unknown} == {"no such device"}
