"""snmpsim's command responder as an SNMP agent on a loopback UDP port.

The data file is an ``.snmprec`` (``OID|type|value`` lines); its name is the community.
It describes two ENTITY-SENSOR-MIB sensors: a CPU temperature and a fan.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.oob_support.emulators import free_port
from tests.oob_support.ipmi_sim import wait_udp
from tests.processes import stop

COMMUNITY = "hwfleet-ro"
RECORDS = """1.3.6.1.2.1.1.1.0|4|hwfleet test PDU
1.3.6.1.2.1.1.3.0|67|123456
1.3.6.1.2.1.47.1.1.1.1.7.1|4|CPU Temp
1.3.6.1.2.1.47.1.1.1.1.7.2|4|Fan 1
1.3.6.1.2.1.99.1.1.1.1.1|2|8
1.3.6.1.2.1.99.1.1.1.1.2|2|10
1.3.6.1.2.1.99.1.1.1.2.1|2|9
1.3.6.1.2.1.99.1.1.1.2.2|2|9
1.3.6.1.2.1.99.1.1.1.4.1|2|44
1.3.6.1.2.1.99.1.1.1.4.2|2|5200
1.3.6.1.2.1.99.1.1.1.5.1|2|1
1.3.6.1.2.1.99.1.1.1.5.2|2|1
"""


#: The SNMPv3 user snmpsim is started with (``snmp_agent(..., v3=True)``): user, SHA
#: authentication passphrase, AES privacy passphrase.
V3_USER = ("hwfleet-v3", "auth-Pass-7391", "priv-Pass-2046")


@dataclass
class SnmpAgent:
    host: str
    port: int
    community: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop(self.proc)


@contextlib.contextmanager
def snmp_agent(tmp: Path, *, v3: bool = False) -> Iterator[SnmpAgent]:
    tmp.mkdir(parents=True, exist_ok=True)
    # snmpsim refuses to run as root and drops to nobody, who cannot enter pytest's
    # private tmp dirs: its data and cache live in a world-readable dir of their own.
    shared = Path(tempfile.mkdtemp(prefix="hwfleet-snmpsim-"))
    shared.chmod(0o755)
    data, cache = shared / "data", shared / "cache"
    data.mkdir(mode=0o755)
    cache.mkdir()
    cache.chmod(0o777)
    record = data / f"{COMMUNITY}.snmprec"
    record.write_text(RECORDS)
    record.chmod(0o644)
    # SNMPv3 requests carry an empty context name: snmpsim serves those from "self".
    own = data / "self.snmprec"
    own.write_text(RECORDS)
    own.chmod(0o644)
    port = free_port(socket.SOCK_DGRAM)
    log = (tmp / "snmpsim.log").open("wb")
    # Run as nobody, it cannot import from root's Python any more: import what it loads
    # lazily (the dbm modules) before it drops privileges.
    args = [
        sys.executable,
        "-c",
        "import dbm, dbm.dumb, encodings.latin_1, encodings.ascii, sys; "
        "from snmpsim.commands.responder import main; "
        "sys.argv[0] = 'snmpsim-command-responder'; sys.exit(main())",
        f"--data-dir={data}",
        f"--agent-udpv4-endpoint=127.0.0.1:{port}",
        f"--cache-dir={cache}",
    ]
    if v3:
        user, auth, priv = V3_USER
        args += [
            f"--v3-user={user}",
            f"--v3-auth-key={auth}",
            "--v3-auth-proto=SHA",
            f"--v3-priv-key={priv}",
            "--v3-priv-proto=AES",
        ]
    if os.geteuid() == 0:
        args += ["--process-user=nobody", "--process-group=nogroup"]
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_udp(port, proc, deadline=60)
        _wait_answering(port)
        yield SnmpAgent("127.0.0.1", port, COMMUNITY, proc)
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(shared, ignore_errors=True)


def _wait_answering(port: int, deadline: float = 60.0) -> None:
    """Until the agent answers a GET: it indexes its data file on the first request."""
    from hwfleet.oob.driver import BmcAddress, BmcError
    from hwfleet.oob.snmp import SYS_UPTIME, SnmpDriver

    address = BmcAddress(driver="snmp", address="127.0.0.1", port=port, password=COMMUNITY)
    end = time.monotonic() + deadline
    while True:
        try:
            SnmpDriver(address, timeout=5.0).get_oids([SYS_UPTIME])
            return
        except BmcError:
            if time.monotonic() > end:
                raise
