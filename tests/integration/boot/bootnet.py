"""A boot network made of namespaces: a switch (bridge), the server side and DHCP clients.

Everything lives in namespaces this helper creates and deletes; nothing touches the
machine's own interfaces. Addresses are 10.231.77.0/24, inside the namespaces only.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import service_missing
from tests.netns import namespace

SUBNET = "10.231.77"
SERVER_IP = f"{SUBNET}.1"
SERVER_IF = "kea0"
#: The site's own DHCP server (busybox udhcpd) in proxyDHCP tests, and its pool.
SITE_DHCP = f"{SUBNET}.2"
SITE_POOL = (f"{SUBNET}.160", f"{SUBNET}.170")
CLONE_NEWNET = 0x40000000


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class BootNet:
    switch: str
    server: str
    _stack: ExitStack
    clients: dict[str, tuple[str, str]] = field(default_factory=dict)  # ns → (ifname, mac)

    def add_client(self, mac: str | None = None) -> str:
        """A new namespace with one interface on the switch; returns the namespace."""
        ns = self._stack.enter_context(namespace("hwfbc"))
        n = len(self.clients)
        port, inner = f"swc{n}", f"c{n}"
        # Made inside the switch namespace and moved: the host namespace never sees it.
        ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", inner)
        ip("-n", self.switch, "link", "set", inner, "netns", ns)
        ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        if mac is not None:
            ip("-n", ns, "link", "set", inner, "address", mac)
        ip("-n", ns, "link", "set", inner, "up")
        out = subprocess.run(
            ["ip", "-n", ns, "-j", "link", "show", inner], check=True, capture_output=True
        ).stdout
        self.clients[ns] = (inner, json.loads(out)[0]["address"])
        return ns

    def mac(self, ns: str) -> str:
        return self.clients[ns][1]

    async def dhcp(self, ns: str, workdir: Path) -> dict[str, str]:
        """Run busybox udhcpc once in ``ns``; the environment its script saw when bound."""
        ifname = self.clients[ns][0]
        out = workdir / f"udhcpc-{ns}.env"
        script = workdir / "udhcpc.sh"
        # Configure the address as a real client would, then record what udhcpc saw.
        script.write_text(
            "#!/bin/sh\n"
            'case "$1" in\n'
            '  deconfig) busybox ifconfig "$interface" 0.0.0.0 ;;\n'
            '  bound|renew) busybox ifconfig "$interface" "$ip" netmask "$subnet"\n'
            f'    env > "{workdir}/udhcpc-$$.tmp" && mv "{workdir}/udhcpc-$$.tmp" "{out}" ;;\n'
            "esac\nexit 0\n"
        )
        script.chmod(0o755)
        out.unlink(missing_ok=True)
        argv = ["ip", "netns", "exec", ns, "busybox", "udhcpc", "-i", ifname,
                "-n", "-q", "-f", "-t", "6", "-T", "1", "-s", str(script)]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        log, _ = await asyncio.wait_for(proc.communicate(), 30)
        if proc.returncode != 0 or not out.exists():
            raise AssertionError(f"udhcpc got no lease:\n{log.decode()}")
        env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
        return env

    async def site_dhcp(self, workdir: Path) -> asyncio.subprocess.Process:
        """busybox udhcpd in a namespace of its own: the site's DHCP server, which hands out
        the addresses when hwfleet runs as proxyDHCP. Terminate it when done."""
        site = self.add_client()
        ifname = self.clients[site][0]
        ip("-n", site, "addr", "add", f"{SITE_DHCP}/24", "dev", ifname)
        conf = workdir / "udhcpd.conf"
        conf.write_text(
            f"start {SITE_POOL[0]}\nend {SITE_POOL[1]}\ninterface {ifname}\n"
            f"lease_file {workdir / 'udhcpd.leases'}\noption subnet 255.255.255.0\n"
        )
        (workdir / "udhcpd.leases").touch()
        return await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", site, "busybox", "udhcpd", "-f", str(conf),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip


@contextmanager
def boot_network() -> Iterator[BootNet]:
    for tool in ("kea-dhcp4", "busybox"):
        if shutil.which(tool) is None:
            service_missing(f"{tool} is not installed (Debian kea-dhcp4-server, busybox)")
    if os.geteuid() != 0:
        service_missing("network-namespace tests need root")
    with ExitStack() as stack:
        switch = stack.enter_context(namespace("hwfbs"))
        server = stack.enter_context(namespace("hwfbk"))
        ip("-n", switch, "link", "add", "br0", "type", "bridge")
        ip("-n", switch, "link", "set", "br0", "up")
        port = "sws"
        ip("-n", switch, "link", "add", port, "type", "veth", "peer", "name", SERVER_IF)
        ip("-n", switch, "link", "set", SERVER_IF, "netns", server)
        ip("-n", switch, "link", "set", port, "master", "br0", "up")
        ip("-n", server, "addr", "add", f"{SERVER_IP}/24", "dev", SERVER_IF)
        ip("-n", server, "link", "set", SERVER_IF, "up")
        ip("-n", server, "link", "set", "lo", "up")
        yield BootNet(switch, server, stack)


def socket_in(ns: str, host: str, port: int = 0) -> socket.socket:
    """A listening TCP socket made inside ``ns`` (a thread joins the namespace, makes it, ends).

    A socket belongs to the namespace it was made in, whoever uses it later: the test's
    HTTP server answers on the namespaced network without the test process moving there.
    """
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            with open(f"/run/netns/{ns}") as f:
                if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, port))
            sock.listen(64)
            made.append(sock)
        except BaseException as exc:
            made.append(exc)

    # The thread ends inside the namespace and is discarded: the test's threads never move.
    thread = threading.Thread(target=make)
    thread.start()
    thread.join(10)
    result = made[0]
    if isinstance(result, BaseException):
        raise result
    return result


async def run_in(ns: str, *argv: str, timeout: float = 30) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, *argv,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out
