"""Enrollment storms over real TLS sockets: idempotent retries, ``busy`` back-pressure."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from pathlib import Path

import pytest
from tests.integration.controller.conftest import PASSWORD

from hwfleet.agent.links.enroll import enroll
from hwfleet.agent.links.enroll_child import ChildEnrolledTls, ChildEnrollmentError
from hwfleet.controller.app import Controller
from hwfleet.protocol.errors import RemoteError
from hwfleet.sim.fleet import SimFleet
from hwfleet.sim.profiles import generate
from hwfleet.trust import AgentIdentity
from hwfleet.trust.enroll_batch import retry_after


async def key_rows(controller: Controller) -> list[str]:
    async with controller.store.tx(readonly=True) as tx:
        return [k.state for k in await tx.keys.list()]


async def test_concurrent_retries_with_one_key_get_one_row_and_the_same_certificate(
    controller: Controller, tmp_path: Path
) -> None:
    host, port = controller.gateway.address
    identity = AgentIdentity.load_or_create(tmp_path / "agent", str(uuid.uuid4()))
    fingerprint = controller.admission.ca.fingerprint()
    replies = await asyncio.gather(
        *(
            enroll(identity, host, port, password=PASSWORD, expected_fingerprint=fingerprint)
            for _ in range(6)
        )
    )
    assert len({r["cert"] for r in replies}) == 1
    assert len({r["key_id"] for r in replies}) == 1
    assert await key_rows(controller) == ["accepted"]


async def test_a_busy_controller_says_when_to_retry_and_nothing_is_written(
    controller: Controller, tmp_path: Path
) -> None:
    controller.admission.enroll_queue.max_wait = 0.0  # every request is one too many
    host, port = controller.gateway.address
    identity = AgentIdentity.load_or_create(tmp_path / "agent", str(uuid.uuid4()))
    with pytest.raises(RemoteError) as refused:
        await enroll(
            identity,
            host,
            port,
            password=PASSWORD,
            expected_fingerprint=controller.admission.ca.fingerprint(),
        )
    assert refused.value.code == "busy"
    wait = retry_after(refused.value.msg)
    assert wait is not None and 1 <= wait <= 10
    assert await key_rows(controller) == []
    assert not identity.is_enrolled


async def test_agents_told_busy_come_back_and_enroll_once(
    controller: Controller, tmp_path: Path, deadline: float
) -> None:
    queue = controller.admission.enroll_queue
    queue.max_wait = 0.0
    host, port = controller.gateway.address
    sim = SimFleet(
        generate(3, seed=18),
        host,
        port,
        data_dir=str(tmp_path / "sim"),
        enroll_password=PASSWORD,
        reconnect_min=0.05,
        reconnect_max=0.2,
    )
    await sim.start()
    try:
        for _ in range(int(deadline / 0.05)):  # polling the links' state, bounded
            if all("busy" in (getattr(d.link, "last_error", None) or "") for d in sim.devices):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the devices were never told the controller is busy")
        assert await key_rows(controller) == []
        queue.max_wait = 6.0  # the storm is over
        assert await sim.wait_connected(deadline) == 3
    finally:
        await sim.close()
    assert await key_rows(controller) == ["accepted"] * 3


async def test_the_agent_enrolls_in_a_child_process_and_hears_its_refusals(
    controller: Controller, tmp_path: Path
) -> None:
    host, port = controller.gateway.address
    device = str(uuid.uuid4())
    fingerprint = controller.admission.ca.fingerprint()
    wrong = ChildEnrolledTls(
        tmp_path / "agent", device, host, port, password="wrong", controller_fingerprint=fingerprint
    )
    with pytest.raises(ChildEnrollmentError, match="wrong enrollment password"):
        await wrong()
    controller.admission.enroll_queue.max_wait = 0.0
    provider = ChildEnrolledTls(
        tmp_path / "agent",
        device,
        host,
        port,
        password=PASSWORD,
        controller_fingerprint=fingerprint,
    )
    with pytest.raises(ChildEnrollmentError) as busy:
        await provider()
    assert retry_after(str(busy.value)) is not None
    assert not provider.is_enrolled
    controller.admission.enroll_queue.max_wait = 6.0
    context = await provider()
    assert provider.is_enrolled and context.verify_mode == ssl.CERT_REQUIRED
    assert await key_rows(controller) == ["accepted"]
    assert (await provider()) is context  # enrolled: no second child, the same context


async def test_over_the_anonymous_cap_a_knock_is_refused_before_tls_and_the_devices_get_in_later(
    controller: Controller, tmp_path: Path, deadline: float
) -> None:
    gateway = controller.gateway
    listener = gateway._listener
    assert listener is not None, "the TLS agent port answers knocks"
    guard = gateway.guard
    # Every anonymous slot taken (by sources that are not the devices').
    holders = [f"10.77.{i // 200}.{i % 200}" for i in range(guard.limits.total)]
    for source in holders:
        assert guard.admit(source) is None
    host, port = gateway.address
    sim = SimFleet(
        generate(3, seed=21),
        host,
        port,
        data_dir=str(tmp_path / "sim"),
        enroll_password=PASSWORD,
    )
    await sim.start()
    try:
        for _ in range(int(deadline / 0.05)):  # polling the links' state, bounded
            if listener.knocks_refused >= 3 and all(
                "anonymous_links" in (getattr(d.link, "last_error", None) or "")
                for d in sim.devices
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the devices were never refused for lack of slots")
        # Refused in plain text: no device got as far as a TLS link.
        assert listener.knocks_admitted == 0
        assert all("retry after" in (getattr(d.link, "last_error", "") or "") for d in sim.devices)
        assert await key_rows(controller) == []
        for source in holders:  # the storm is over
            guard.release(source)
        assert await sim.wait_connected(deadline) == 3
    finally:
        await sim.close()
    assert await key_rows(controller) == ["accepted"] * 3
    assert listener.knocks_admitted == 3  # one TLS enrollment per device, no more
