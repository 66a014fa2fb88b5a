"""The BMC driver interface and the values every driver returns.

Drivers are synchronous (sushy, pyghmi and pysnmp's hlapi all block); the service runs
each call in a worker thread with a deadline. Every failure is a :class:`BmcError`
whose message names what went wrong and never the credentials: callers store and
return it as-is.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar, Literal

import msgspec

PowerAction = Literal["on", "off", "cycle", "reset", "status"]
ErrorKind = Literal["auth", "unreachable", "timeout", "protocol", "unsupported", "bad_input"]


class BmcError(Exception):
    """A BMC operation failed; ``kind`` lets callers tell a wrong password from a dead BMC."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class BmcAddress(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a BMC is and how to log in: stored only encrypted (:mod:`hwfleet.oob.vault`).

    ``address`` is a URL for Redfish (``https://host:port``) and a host for IPMI/SNMP.
    For SNMP v2c the ``password`` is the community string; SNMPv3 (a ``username``, the USM
    user) uses ``password`` as the authentication passphrase and ``priv_password`` as the
    privacy one, with ``auth_protocol`` / ``priv_protocol`` (default SHA and AES).
    """

    driver: str
    address: str
    username: str = ""
    password: str = ""
    port: int = 0
    verify_tls: bool = True
    system: str = ""  # Redfish: the ComputerSystem id (empty: the only/first one)
    # --- SNMPv3 (authPriv) ---
    priv_password: str = ""
    auth_protocol: str = ""  # sha, sha224, sha256, sha384, sha512 (empty: sha)
    priv_protocol: str = ""  # aes, aes192, aes256 (empty: aes)

    def __repr__(self) -> str:  # never print the password, not even in a traceback
        return f"BmcAddress(driver={self.driver!r}, address={self.address!r})"

    def public(self) -> dict[str, Any]:
        """What the API may show: everything but the credentials."""
        shown: dict[str, Any] = {"driver": self.driver, "address": self.address, "port": self.port}
        if self.driver == "snmp":  # which security, never the user or the passphrases
            shown["snmp"] = (
                f"v3 authPriv {self.auth_protocol or 'sha'}/{self.priv_protocol or 'aes'}"
                if self.username
                else "v2c"
            )
        return shown

    def secrets(self) -> tuple[str, ...]:
        """Every value that must never appear in a message."""
        return (self.password, self.username, self.priv_password)


class Sensor(msgspec.Struct, kw_only=True):
    name: str
    kind: str  # temperature, fan, voltage, power, other
    value: float | None
    units: str = ""
    health: str = "ok"  # ok, warning, critical, unknown
    upper_critical: float | None = None
    lower_critical: float | None = None


class SelEntry(msgspec.Struct, kw_only=True):
    id: str
    timestamp: str
    severity: str  # ok, warning, critical
    message: str
    sensor: str = ""


class FirmwareItem(msgspec.Struct, kw_only=True):
    component: str
    version: str


class UpdateProgress(msgspec.Struct, kw_only=True):
    """Where one firmware update stands on the BMC (its Redfish task monitor)."""

    state: Literal["running", "done", "failed"]
    percent: float | None = None
    message: str = ""


class BmcDriver(abc.ABC):
    """One connection's worth of BMC operations; built per call from a :class:`BmcAddress`."""

    #: Poller types this driver serves and their default intervals (seconds): RackHD's.
    poller_defaults: ClassVar[dict[str, float]] = {}

    def __init__(
        self, address: BmcAddress, *, timeout: float, sessions: dict[str, Any] | None = None
    ) -> None:
        """``sessions``: the caller's store for sessions a driver keeps between calls."""
        self.address = address
        self.timeout = timeout
        self.sessions = {} if sessions is None else sessions

    @abc.abstractmethod
    def power(self, action: PowerAction) -> str:
        """Do ``action``; return the power state afterwards (``on``/``off``/``unknown``)."""

    @abc.abstractmethod
    def sensors(self) -> list[Sensor]: ...

    @abc.abstractmethod
    def sel(self) -> list[SelEntry]: ...

    def chassis(self) -> dict[str, Any]:
        """Power state and health: the ``chassis`` poller's data."""
        return {"power": self.power("status")}

    def bios(self) -> dict[str, Any]:
        raise BmcError("unsupported", f"the {self.address.driver} driver cannot read BIOS settings")

    def set_bios(self, attributes: dict[str, Any]) -> None:
        raise BmcError("unsupported", f"the {self.address.driver} driver cannot set BIOS settings")

    def firmware(self) -> list[FirmwareItem]:
        raise BmcError("unsupported", f"the {self.address.driver} driver has no firmware inventory")

    def start_update(self, image_uri: str, component: str) -> str:
        """Ask the BMC to install ``image_uri`` on ``component``; the task monitor to follow."""
        raise BmcError("unsupported", f"the {self.address.driver} driver cannot update firmware")

    def update_progress(self, monitor: str) -> UpdateProgress:
        """One look at an update started by :meth:`start_update` (or before a restart)."""
        raise BmcError("unsupported", f"the {self.address.driver} driver cannot update firmware")

    def close(self) -> None:  # noqa: B027  (optional hook: most drivers hold no session)
        """Release the session (logout); errors here are not worth reporting."""

    def poll(self, poller_type: str) -> Any:
        """The data of one poll of ``poller_type`` (``sel``, ``sdr``, ``chassis``)."""
        if poller_type == "sel":
            return [msgspec.to_builtins(e) for e in self.sel()]
        if poller_type == "sdr":
            return [msgspec.to_builtins(s) for s in self.sensors()]
        if poller_type == "chassis":
            return self.chassis()
        raise BmcError(
            "bad_input", f"the {self.address.driver} driver has no {poller_type!r} poller"
        )
