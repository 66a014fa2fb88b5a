"""The whole controller with boot services on, driven by the operator's CLI; and attach.

Kea runs in a namespace (``--boot-kea-launcher``); a udhcpc client takes a lease; then
``hwfleet boot status|leases|pin`` run as processes against the controller's REST API.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.integration.boot.bootnet import SERVER_IF, SERVER_IP, SUBNET, boot_network

from hwfleet.boot.kea_config import DhcpRange, KeaLayout, KeaParams, build_config
from hwfleet.boot.kea_supervisor import KeaSupervisor
from hwfleet.controller.app import Controller
from hwfleet.settings import ServerSettings

HWFLEET = [sys.executable, "-m", "hwfleet.cli"]


async def cli(api: str, data_dir: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "HWFLEET_API": api}
    env.pop("HWFLEET_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        *HWFLEET, *args, "--data-dir", data_dir,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_server_with_boot_and_the_cli(tmp_path: Path) -> None:
    with boot_network() as net:
        data = str(tmp_path / "controller")
        settings = ServerSettings(
            data_dir=data,
            agent_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
            bus="memory://",
            boot_interface=SERVER_IF,
            dhcp_range=f"{SUBNET}.100-{SUBNET}.110",
            boot_kea_launcher=f"ip netns exec {net.server}",
            boot_tftp_listen="127.0.0.1:0",
            boot_lease_poll=0.2,
        )
        ctl = Controller(settings)
        await ctl.start()
        try:
            assert ctl.boot is not None
            client = net.add_client()
            leased = (await net.dhcp(client, tmp_path))["ip"]
            mac = net.mac(client)

            code, out = await cli(ctl.api_url, data, "boot", "status", "--json")
            assert code == 0, out
            status = json.loads(out)
            assert status["kea"]["alive"] and status["server_ip"] == SERVER_IP
            assert status["range"] == f"{SUBNET}.100-{SUBNET}.110"

            code, out = await cli(ctl.api_url, data, "boot", "leases", "--json")
            assert code == 0, out
            assert [(x["mac"], x["ip"]) for x in json.loads(out)["leases"]] == [(mac, leased)]

            code, out = await cli(ctl.api_url, data, "boot", "pin", mac, f"{SUBNET}.105")
            if leased == f"{SUBNET}.105":
                assert code == 0, out
            else:
                assert code == 0 and f"pinned {mac} to {SUBNET}.105" in out, out
            code, out = await cli(ctl.api_url, data, "boot", "pin", "02:00:00:00:00:07", leased)
            assert code != 0 and "409" in out and mac in out
            code, out = await cli(ctl.api_url, data, "boot", "pin", "nonsense", leased)
            assert code != 0 and "not a MAC" in out
            # The bus answers the same table to any other client of the dhcp exchange.
            table = await ctl.bus.call("dhcp", "peekLeaseTable", {})
            assert table["pins"] == [{"mac": mac, "ip": f"{SUBNET}.105"}]
        finally:
            await ctl.close()


async def test_attaches_to_a_running_kea(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def note(key: str, payload: dict[str, Any]) -> None:
        events.append((key, payload))

    with boot_network() as net:
        layout = KeaLayout(tmp_path / "kea")
        pool = DhcpRange.parse(f"{SUBNET}.100-{SUBNET}.110")
        config = build_config(KeaParams(SERVER_IF, SERVER_IP, pool, layout, "http://x"))
        launcher = ["ip", "netns", "exec", net.server]
        first = KeaSupervisor(layout, note, launcher=launcher)
        await first.start(config)
        try:
            second = KeaSupervisor(layout, note, launcher=launcher)
            await second.start(config)
            assert second.attached and second.pid is None
            await second.close()  # an attached Kea is not ours to stop
            assert await first.control.alive()
            client = net.add_client()
            assert (await net.dhcp(client, tmp_path))["ip"].startswith(f"{SUBNET}.1")
        finally:
            await first.close()
        assert not await first.control.alive()
        assert events == []  # nothing died unexpectedly
