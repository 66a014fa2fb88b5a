"""OpenIPMI's ``ipmi_sim`` as an IPMI-over-LAN BMC on a loopback UDP port.

The configuration is written per test: one LAN channel on 127.0.0.1, one admin user,
a chassis-control script keeping the power state in a file (what ``ipmi_sim`` calls
to power the "machine"), and an emulator command file with a SEL and one entry.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.oob_support.emulators import free_port
from tests.processes import stop

CHASSIS = """#!/bin/sh
# ipmi_sim_chassiscontrol <device> get|set [parm [val]]...: power kept in a file.
state="$(dirname "$0")/power"
[ -f "$state" ] || echo 0 > "$state"
dev=$1; op=$2; shift 2
if [ "$op" = get ]; then
  for p in "$@"; do [ "$p" = power ] && echo "power:$(cat "$state")"; done
  exit 0
fi
while [ $# -gt 1 ]; do
  case $1 in power) echo "$2" > "$state";; esac
  shift 2
done
exit 0
"""


def _cpu_temp_sdr() -> str:
    """A full sensor record (IPMI 2.0 table 43-1): sensor 1, temperature, "CPU Temp"."""
    name = b"CPU Temp"
    body = [0x20, 0x00, 0x01, 0x03, 0x01, 0x67, 0x68, 0x01, 0x01, 0, 0, 0, 0, 0x38, 0x00]
    # units (degrees C), linear, M=1, B=0, no exponents
    body += [0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]
    # nominal, normal max/min, sensor max/min, thresholds UNR/UCR/UNC/LNR/LCR/LNC
    body += [0x00, 0x00, 0x00, 0xFF, 0x00, 0xA0, 0x5A, 0x50, 0, 0, 0]
    body += [0, 0, 0, 0, 0, 0xC0 | len(name), *name]  # hysteresis, reserved, OEM, id string
    record = [0x01, 0x00, 0x51, 0x01, len(body), *body]
    return " ".join(f"0x{b:02x}" for b in record)


_SCAN = "000111111000000"
EMU = "\n".join(
    [
        "mc_setbmc 0x20",
        "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02",
        "sel_enable 0x20 1000 0x0a",
        # One temperature sensor, number 1, reading 41 (degrees C), upper critical 90.
        "sensor_add 0x20 0 1 0x01 0x01",
        f"sensor_set_event_support 0x20 0 1 enable scanning per-state {' '.join([_SCAN] * 4)}",
        "sensor_set_value 0x20 0 1 0x29 0",
        "sensor_set_threshold 0x20 0 1 settable 111000 0xa0 0x5a 0x50 00 00 00",
        f"main_sdr_add 0x20 {_cpu_temp_sdr()}",
        # One SEL entry: CPU Temp upper non-critical going high.
        "sel_add 0x20 0x02 0x00 0x00 0x00 0x00 0x20 0x00 0x04 0x01 0x01 0x01 0x57 0x00 0x00",
        "mc_enable 0x20",
        "",
    ]
)
IPMI_PASSWORD = "ipmi-Pass-77"


@dataclass
class IpmiSim:
    host: str
    port: int
    username: str
    password: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop(self.proc)


def have_ipmi_sim() -> bool:
    return shutil.which("ipmi_sim") is not None


@contextlib.contextmanager
def ipmi_sim(tmp: Path, password: str = IPMI_PASSWORD) -> Iterator[IpmiSim]:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port(socket.SOCK_DGRAM)
    chassis = tmp / "chassis"
    chassis.write_text(CHASSIS)
    chassis.chmod(0o755)
    (tmp / "lan.conf").write_text(
        f'name "hwfleet"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n'
        "    priv_limit admin\n    allowed_auths_admin md5\n    allowed_auths_user md5\n"
        "    allowed_auths_operator md5\n    allowed_auths_callback md5\n"
        "    guid a123456789abcdefa123456789abcdef\n  endlan\n"
        f'  chassis_control "{chassis} 0x20"\n'
        f'  user 2 true "admin" "{password}" admin 10 md5\n'
    )
    (tmp / "bmc.emu").write_text(EMU)
    state = tmp / "state"
    state.mkdir(exist_ok=True)
    log = (tmp / "ipmi_sim.log").open("wb")
    proc = subprocess.Popen(
        [
            "ipmi_sim",
            "-n",
            "-c",
            str(tmp / "lan.conf"),
            "-f",
            str(tmp / "bmc.emu"),
            "-s",
            str(state),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_udp(port, proc)
        yield IpmiSim("127.0.0.1", port, "admin", password, proc)
    finally:
        stop(proc)
        log.close()


def wait_udp(port: int, proc: subprocess.Popen[bytes], deadline: float = 20.0) -> None:
    """Until something holds the UDP port (bind fails), or the simulator exits."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)  # polling a port that is not yet bound: nothing to wait on
    raise TimeoutError(f"{proc.args[0]} did not bind 127.0.0.1:{port} in {deadline} s")
