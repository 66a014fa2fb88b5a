"""HTTP boot on the namespaced network: a client with a Kea lease fetches its iPXE script
and boot files with busybox wget, over real TCP from its own namespace."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from tests.integration.boot.bootnet import SERVER_IP, run_in, socket_in
from tests.integration.boot.conftest import CA_FINGERPRINT

from hwfleet.api import boot as boot_api
from hwfleet.api.deps import provide
from hwfleet.boot.nodes import node_id_for_mac
from hwfleet.boot.profiles import BootProfile
from hwfleet.trust.tokens import token_hash


@pytest.fixture
async def bus() -> AsyncIterator[Any]:
    """The HTTP routes do not use the bus: one run, on memory://."""
    from hwfleet.bus import open_bus

    bus = open_bus("memory://")
    await bus.start()
    yield bus
    await bus.close()


@pytest.fixture
async def http(boot: Any) -> AsyncIterator[tuple[Any, Any, Any, str]]:
    service, net, watch = boot
    app = FastAPI()
    provide(app, service)
    app.state.operator_token = "operator-secret"
    app.include_router(boot_api.boot_router)
    app.include_router(boot_api.router)
    sock = socket_in(net.server, SERVER_IP)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield service, net, watch, f"http://{SERVER_IP}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def wget(ns: str, url: str, *extra: str) -> tuple[int, bytes]:
    return await run_in(ns, "busybox", "wget", "-q", "-O", "-", *extra, url)


class Graphs:
    """The task-graph engine's answer, as the injected ActiveGraphProfiles protocol gives it."""

    def __init__(self) -> None:
        self.active: dict[str, BootProfile] = {}

    async def boot_profile(self, node_id: str) -> BootProfile | None:
        return self.active.get(node_id)


async def test_scripts_by_node_state(http: Any, tmp_path: Path) -> None:
    service, net, watch, base = http
    client = net.add_client()
    mac = net.mac(client)
    await net.dhcp(client, tmp_path)
    node = node_id_for_mac(mac)

    code, chain = await wget(client, f"{base}/boot/ipxe")
    assert code == 0, chain
    assert chain.startswith(b"#!ipxe") and b"/boot/script?mac=${netX/mac" in chain

    # Unknown MAC: the discovery profile, carrying a real single-use token.
    code, script = await wget(client, f"{base}/boot/script?mac={mac.replace(':', '-')}")
    assert code == 0, script
    text = script.decode()
    assert "kernel " in text and f"hwfleet.node={node}" in text
    # The agent pins the controller's CA: no trust in whichever controller answers first.
    assert f"hwfleet.ca={CA_FINGERPRINT} " in text
    token = text.split("hwfleet.token=")[1].split()[0]
    async with service._store.tx(readonly=True) as tx:
        from datetime import UTC, datetime

        assert await tx.tokens.valid(token_hash(token), datetime.now(UTC))
    event = await watch.wait(f"http.response.{node}")
    assert event["profile"] == "discovery" and event["status"] == 200
    # Asked again, the same token (not one per reboot).
    assert token in (await wget(client, f"{base}/boot/script?mac={mac}"))[1].decode()

    # An active graph names a profile: it wins.
    graphs = Graphs()
    service.scripts._graphs = graphs
    (service.profiles.directory).mkdir(parents=True, exist_ok=True)
    (service.profiles.directory / "reimage.ipxe").write_text("#!ipxe\nchain $base/img/$image\n")
    graphs.active[node] = BootProfile("reimage", {"image": "debian12"})
    code, script = await wget(client, f"{base}/boot/script?mac={mac}")
    assert script.decode() == f"#!ipxe\nchain {service.params.http_base}/img/debian12\n"
    # An option that would inject an iPXE command is refused, not rendered.
    graphs.active[node] = BootProfile("reimage", {"image": "x\nshell"})
    code, _ = await wget(client, f"{base}/boot/script?mac={mac}")
    assert code != 0


async def test_not_leased_and_bad_mac_are_refused(http: Any, tmp_path: Path) -> None:
    _service, net, watch, base = http
    client = net.add_client()
    await net.dhcp(client, tmp_path)
    # Another MAC's script (no lease to this address): no token.
    code, out = await wget(client, f"{base}/boot/script?mac=02:00:00:00:00:42")
    assert code != 0 and b"403" in out
    assert (await watch.wait("http.response.unknown"))["status"] == 403
    code, out = await wget(client, f"{base}/boot/script?mac=nope")
    assert code != 0 and b"400" in out
    # The operator routes need the token, boot routes do not.
    code, out = await wget(client, f"{base}/api/v1/boot/status")
    assert code != 0 and b"401" in out
    code, out = await wget(
        client, f"{base}/api/v1/boot/status", "--header", "Authorization: Bearer operator-secret"
    )
    assert code == 0 and b'"alive":true' in out


async def test_boot_files_with_ranges(http: Any, tmp_path: Path) -> None:
    service, net, watch, base = http
    client = net.add_client()
    await net.dhcp(client, tmp_path)
    kernel = service.files_dir / "discovery" / "vmlinuz"
    kernel.parent.mkdir(parents=True)
    data = bytes(range(256)) * 4096
    kernel.write_bytes(data)
    code, out = await wget(client, f"{base}/boot/files/discovery/vmlinuz")
    assert code == 0 and hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    node = node_id_for_mac(net.mac(client))
    assert (await watch.wait(f"http.response.{node}"))["path"] == "discovery/vmlinuz"
    # A resumed download (busybox wget -c sends Range) gets the rest only.
    partial = tmp_path / "part"
    partial.write_bytes(data[:1000])
    code, out = await run_in(
        client,
        "busybox",
        "wget",
        "-q",
        "-c",
        "-O",
        str(partial),
        f"{base}/boot/files/discovery/vmlinuz",
    )
    assert code == 0, out
    assert partial.read_bytes() == data
    for bad in ("../hwfleet.db", "%2e%2e/%2e%2e/hwfleet.db", "discovery/../../kea/kea-dhcp4.json"):
        code, out = await wget(client, f"{base}/boot/files/{bad}")
        assert code != 0 and b"404" in out, bad
