"""The IPMI-over-LAN driver (pyghmi, RMCP+ / IPMI 2.0): power, the SDR sensors, the SEL.

pyghmi keeps one session per (BMC, user) in a background thread and retries on its own;
its failures arrive as ``IpmiException`` with a message such as "timeout" or
"Unauthorized name", which :mod:`hwfleet.oob.errors` sorts into kinds.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

from hwfleet.oob.driver import BmcAddress, BmcDriver, BmcError, PowerAction, SelEntry, Sensor
from hwfleet.oob.errors import translate

_SET = {"on": "on", "off": "off", "cycle": "boot", "reset": "reset"}
_KIND = {"Temperature": "temperature", "Fan": "fan", "Voltage": "voltage", "Current": "power"}
#: pyghmi's const.Health bits: 0 ok, 1 warning, 2 critical, 4 failed.
_HEALTH = {0: "ok", 1: "warning", 2: "critical", 4: "critical"}


class IpmiDriver(BmcDriver):
    """A BMC at ``address`` (host), UDP port ``port`` (default 623)."""

    poller_defaults: ClassVar[dict[str, float]] = {"sel": 60.0, "sdr": 60.0, "chassis": 15.0}

    def __init__(
        self, address: BmcAddress, *, timeout: float, sessions: dict[str, Any] | None = None
    ) -> None:
        super().__init__(address, timeout=timeout, sessions=sessions)
        self._cmd: Any = None
        a = address
        # One pyghmi Command per BMC and login, reused: pyghmi caches the RMCP+ session
        # underneath, and a second Command for a BMC with a live session can hang.
        self._key = f"ipmi|{a.address}|{a.port}|{a.username}|{hash(a.password)}"
        entry = self.sessions.setdefault(self._key, [threading.Lock(), None])
        self._lock: threading.Lock = entry[0]

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """The BMC's command object, used by one thread at a time; dropped after a failure."""
        entry = self.sessions[self._key]
        if not self._lock.acquire(timeout=self.timeout):
            raise BmcError("timeout", f"ipmi BMC {self.address.address} is busy with another call")
        try:
            if entry[1] is None:
                from pyghmi.ipmi import command

                a = self.address
                with translate(a):
                    entry[1] = command.Command(
                        bmc=a.address, userid=a.username, password=a.password, port=a.port or 623
                    )
            try:
                with translate(self.address):
                    yield entry[1]
            except BmcError:
                entry[1] = None  # a broken session is not reused
                raise
        finally:
            self._lock.release()

    def power(self, action: PowerAction) -> str:
        with self._session() as cmd:
            if action != "status":
                cmd.set_power(_SET[action], wait=self.timeout)
            state = cmd.get_power()
        if not isinstance(state, dict) or "powerstate" not in state:
            raise BmcError("protocol", "the BMC's power status had no power state")
        return str(state["powerstate"])

    def sensors(self) -> list[Sensor]:
        out = []
        with self._session() as cmd:
            for r in cmd.get_sensor_data():
                value = r.value if isinstance(r.value, int | float) else None
                out.append(
                    Sensor(
                        name=str(r.name),
                        kind=_KIND.get(str(r.type), "other"),
                        value=None if value is None else float(value),
                        units=str(r.units or ""),
                        health=_HEALTH.get(int(r.health), "critical"),
                    )
                )
        return out

    def sel(self) -> list[SelEntry]:
        out = []
        with self._session() as cmd:
            for e in cmd.get_event_log():
                severity = {0: "ok", 1: "warning", 2: "critical"}.get(
                    e.get("severity", 0), "critical"
                )
                out.append(
                    SelEntry(
                        id=str(e.get("record_id", "")),
                        timestamp=str(e.get("timestamp", "")),
                        severity=severity,
                        message=" ".join(str(x) for x in (e.get("component"), e.get("event")) if x),
                        sensor=str(e.get("component_type", "")),
                    )
                )
        return out
