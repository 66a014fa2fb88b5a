"""Kea never outlives ``hwfleet server``: stopped on SIGTERM/SIGINT, on SIGKILL by the kernel
(parent-death signal), and an orphan left anyway is replaced at the next start.

Real parts: ``hwfleet server`` and Kea in the server namespace of the boot network, busybox
udhcpc taking leases from a client namespace. (Kea dying while the server runs, and its
restart with events, is tests/integration/boot/test_dhcp_netns.py::test_kea_killed_is_restarted.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from tests.integration.boot.bootnet import SERVER_IF, SERVER_IP, SUBNET, boot_network
from tests.integration.boot.server_proc import process_exit, server_in, tail

from hwfleet.boot.kea_orphan import OWNER_FILE, read_owner, runs_config

pytestmark = [pytest.mark.netns]

RANGE = f"{SUBNET}.100-{SUBNET}.120"

#: A controller that started Kea without a parent-death signal, then waits to be killed:
#: what a controller on a machine without setpriv (or an older hwfleet) leaves behind.
ORPHAN_MAKER = r"""
import asyncio, sys
from pathlib import Path
from hwfleet.boot.kea_config import DhcpRange, KeaLayout, KeaParams, build_config
from hwfleet.boot.kea_supervisor import KeaSupervisor
async def main():
    layout = KeaLayout(Path(sys.argv[1]))
    pool = DhcpRange.parse(sys.argv[4], 24)
    config = build_config(KeaParams(sys.argv[2], sys.argv[3], pool, layout, "http://x"))
    async def note(key, payload): pass
    kea = KeaSupervisor(layout, note, pdeathsig=False)
    await kea.start(config)
    print("kea", kea.pid, flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def kea_pid(data: Path) -> int:
    owner = read_owner(data / "boot" / "kea")
    assert owner is not None, f"no {OWNER_FILE}: the server did not record its Kea"
    return owner.kea_pid


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_kea_stops_with_the_server(tmp_path: Path, sig: signal.Signals) -> None:
    with boot_network() as net:
        data = tmp_path / "controller"
        async with server_in(net.server, data, "--dhcp-range", RANGE) as server:
            pid = kea_pid(data)
            config = data / "boot" / "kea" / "kea-dhcp4.json"
            assert runs_config(pid, config)
            assert await server.stop(sig) == 0, tail(server.log)
        # The server waited for Kea before it exited: it is gone now, not soon.
        assert await process_exit(pid, 0.5), f"Kea {pid} outlived the server:\n{tail(server.log)}"
        assert not (data / "boot" / "kea" / OWNER_FILE).exists()


async def test_kea_stops_when_the_server_is_killed_and_the_next_start_serves(
    tmp_path: Path,
) -> None:
    with boot_network() as net:
        data = tmp_path / "controller"
        client = net.add_client()
        async with server_in(net.server, data, "--dhcp-range", RANGE) as server:
            pid = kea_pid(data)
            first = (await net.dhcp(client, tmp_path))["ip"]
            await server.stop(signal.SIGKILL)
        # The kernel sends Kea its parent-death signal (SIGTERM): it exits on its own.
        if not await process_exit(pid, 15):
            os.kill(pid, signal.SIGKILL)  # leave no Kea behind a failed test
            raise AssertionError(f"Kea {pid} outlived a killed server")
        async with server_in(net.server, data, "--dhcp-range", RANGE) as server:
            status = await server.cli_json("boot", "status")
            assert status["kea"]["alive"] and not status["kea"]["attached"], status
            assert status["kea"]["pid"] != pid
            leases = await server.cli_json("boot", "leases")
            assert [(x["mac"], x["ip"]) for x in leases["leases"]] == [(net.mac(client), first)]
            assert (await net.dhcp(client, tmp_path))["ip"] == first


async def test_an_orphaned_kea_is_replaced_at_the_next_start(tmp_path: Path) -> None:
    with boot_network() as net:
        data = tmp_path / "controller"
        kea_dir = data / "boot" / "kea"
        kea_dir.mkdir(parents=True)
        maker = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", net.server, sys.executable, "-c", ORPHAN_MAKER,
            str(kea_dir), SERVER_IF, SERVER_IP, RANGE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        assert maker.stdout is not None
        line = (await asyncio.wait_for(maker.stdout.readline(), 60)).decode()
        assert line.startswith("kea "), line + (await maker.stdout.read(4000)).decode()
        orphan = int(line.split()[1])
        client = net.add_client()
        leased = (await net.dhcp(client, tmp_path))["ip"]
        maker.kill()
        await maker.wait()
        # Without the parent-death signal the orphan keeps running, socket and all.
        assert not await process_exit(orphan, 1.0)
        try:
            async with server_in(net.server, data, "--dhcp-range", RANGE) as server:
                assert await process_exit(orphan, 1.0), "the orphan still runs"
                log = server.log.read_text()
                assert f"Kea (pid {orphan}) was left running" in log, tail(server.log)
                status = await server.cli_json("boot", "status")
                kea = status["kea"]
                assert kea["alive"] and not kea["attached"] and kea["pid"] != orphan, status
                # The orphan wrote its leases out when told to shut down; the new Kea has them.
                leases = await server.cli_json("boot", "leases")
                assert [(x["mac"], x["ip"]) for x in leases["leases"]] == [
                    (net.mac(client), leased)
                ], json.dumps(leases)
                # And it is supervised: it serves, and it is stopped with the server.
                assert (await net.dhcp(client, tmp_path))["ip"] == leased
                new = kea["pid"]
            assert await process_exit(new, 0.5)
        finally:
            if not await process_exit(orphan, 0.1):  # the test failed: leave no Kea behind
                os.kill(orphan, signal.SIGKILL)
