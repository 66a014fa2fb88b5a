"""Benchmark: DHCP leases per second through Kea alone, and through Kea run by hwfleet.

Both in the same run, on a namespaced network (tests/integration/boot/bootnet.py: a bridge,
Kea's side, one client side; nothing touches the machine's interfaces). perfdhcp (Debian's
kea tools) plays many clients doing DISCOVER/OFFER/REQUEST/ACK:

* **Kea alone**: hwfleet's generated configuration without the lease_cmds hook, no watcher;
* **hwfleet**: the full BootService: lease_cmds loaded, the lease watcher reading the table
  every ``--poll`` seconds and turning each new lease into a ``dhcp.bind.success`` event and a
  discovered node (SQLite, memory:// bus).

Prints the 4-way exchanges per second perfdhcp measured, and for hwfleet how long after
perfdhcp finished the last bind event was published.

``--vm tcg`` (or ``kvm``) also PXE-boots a qemu VM from ``hwfleet server`` into the discovery
environment and prints the time from power-on to enrolment (tests/integration/boot/pxe_vm.py;
``HWFLEET_TEST_DISCOVERY`` names a prebuilt discovery directory, else it is built first).

    .venv/bin/python bench/boot.py [--clients 250] [--rate 1000] [--seconds 10] [--vm tcg]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.boot.bootnet import (
    SERVER_IF,
    SERVER_IP,
    SUBNET,
    BootNet,
    boot_network,
    ip,
)
from tests.integration.boot.conftest import token_issuer

from hwfleet.boot.kea_config import DhcpRange, KeaLayout, KeaParams, build_config
from hwfleet.boot.kea_supervisor import KeaSupervisor
from hwfleet.boot.service import BootService
from hwfleet.bus import open_bus
from hwfleet.controller.events import EventPublisher
from hwfleet.settings import ServerSettings
from hwfleet.store import open_store

RANGE = f"{SUBNET}.2-{SUBNET}.240"
#: perfdhcp acts as a relay: its interface needs an address (outside the pool).
PERF_IP = f"{SUBNET}.250"


async def perfdhcp(net: BootNet, client: str, clients: int, rate: int, seconds: int) -> float:
    ifname = net.clients[client][0]
    await asyncio.to_thread(ip, "-n", client, "addr", "add", f"{PERF_IP}/24", "dev", ifname)
    argv = ["ip", "netns", "exec", client, "perfdhcp", "-4", "-l", ifname, "-r", str(rate),
            "-R", str(clients), "-p", str(seconds)]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), seconds + 60)
    text = out.decode()
    match = re.search(r"Rate:\s*([\d.]+)\s*4-way exchanges/second", text)
    if match is None:
        raise SystemExit(f"perfdhcp printed no rate:\n{text[-2000:]}")
    return float(match.group(1))


async def kea_alone(net: BootNet, work: Path, args: argparse.Namespace) -> float:
    layout = KeaLayout(work / "alone")
    params = KeaParams(SERVER_IF, SERVER_IP, DhcpRange.parse(RANGE), layout, "http://x")
    config = build_config(params)
    del config["Dhcp4"]["hooks-libraries"]

    async def ignore(key: str, payload: dict[str, object]) -> None:
        return None

    kea = KeaSupervisor(layout, ignore, launcher=["ip", "netns", "exec", net.server])
    await kea.start(config)
    try:
        client = net.add_client()
        return await perfdhcp(net, client, args.clients, args.rate, args.seconds)
    finally:
        await kea.close()


async def with_hwfleet(net: BootNet, work: Path, args: argparse.Namespace) -> tuple[float, float]:
    settings = ServerSettings(
        data_dir=str(work / "hwfleet"),
        boot_interface=SERVER_IF,
        dhcp_range=RANGE,
        boot_kea_launcher=f"ip netns exec {net.server}",
        boot_tftp_listen="off",
        boot_lease_poll=args.poll,
    )
    store = await open_store(f"sqlite+aiosqlite:///{work / 'hwfleet.db'}")
    bus = open_bus("memory://")
    await bus.start()
    binds: list[float] = []
    changed = asyncio.Event()

    async def on_bind(delivery: object) -> None:
        binds.append(time.monotonic())
        changed.set()

    await bus.subscribe("events", "dhcp.bind.success.*", on_bind)
    service = BootService(
        settings, store, bus, EventPublisher(store, bus), issue_token=token_issuer(store)
    )
    await service.start()
    try:
        client = net.add_client()
        rate = await perfdhcp(net, client, args.clients, args.rate, args.seconds)
        done = time.monotonic()
        leases = len(await service.leases.all())
        async with asyncio.timeout(30):
            while len(binds) < leases:
                changed.clear()
                await changed.wait()
        lag = (binds[-1] - done) if binds else float("nan")
        print(f"  hwfleet: {leases} leases in Kea, {len(binds)} bind events")
        return rate, lag
    finally:
        await service.close()
        await bus.close()
        await store.close()


async def main(args: argparse.Namespace) -> None:
    if shutil.which("perfdhcp") is None:
        raise SystemExit("perfdhcp is not installed (Debian: kea-admin / kea tools)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with boot_network() as net:
            alone = await kea_alone(net, work, args)
        with boot_network() as net:
            hooked, lag = await with_hwfleet(net, work, args)
    print(f"clients {args.clients}, offered rate {args.rate}/s, {args.seconds} s each")
    print(f"  Kea alone:            {alone:8.1f} 4-way exchanges/s")
    print(f"  Kea + hwfleet:        {hooked:8.1f} 4-way exchanges/s ({hooked / alone:.0%})")
    print(f"  last bind event {lag:.2f} s after perfdhcp ended (poll {args.poll} s)")
    if args.vm:
        from tests.integration.boot.pxe_vm import pxe_boot

        with tempfile.TemporaryDirectory() as tmp:
            run = await pxe_boot(Path(tmp), accel=args.vm)
        print(f"  qemu ({args.vm}) power-on to enrolment: {run.seconds:8.1f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=250)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--vm", choices=("tcg", "kvm"), help="also time a VM's PXE boot")
    asyncio.run(main(parser.parse_args()))
