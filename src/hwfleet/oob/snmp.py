"""The SNMP driver (pysnmp, v2c or v3): sensors from ENTITY-SENSOR-MIB, uptime, raw OID reads.

For v2c the BMC record's ``password`` is the community string (sealed like any password);
a record with a ``username`` speaks SNMPv3 USM authPriv instead: that user, ``password``
as the authentication passphrase, ``priv_password`` as the privacy one, SHA-1/SHA-2 and
AES only (MD5 and DES are refused: broken). ``port`` defaults to 161. SNMP has no standard
power control or event log, so ``power`` answers only ``status`` ("unknown" unless the
agent is down) and ``sel`` is unsupported. pysnmp 7 is asyncio-only; the driver runs in a
worker thread, so each call gets its own short event loop there.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from hwfleet.oob.driver import (
    BmcAddress,
    BmcDriver,
    BmcError,
    ErrorKind,
    PowerAction,
    SelEntry,
    Sensor,
)
from hwfleet.oob.errors import scrub

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
ENT_SENSOR = "1.3.6.1.2.1.99.1.1.1"  # entPhySensorEntry: .1 type .2 scale .4 value .5 status
ENT_NAME = "1.3.6.1.2.1.47.1.1.1.1.7"  # entPhysicalName
_TYPES = {
    8: ("temperature", "C"),
    10: ("fan", "RPM"),
    3: ("voltage", "V"),
    4: ("voltage", "V"),
    6: ("power", "W"),
    5: ("power", "A"),
}
_SCALE = {8: 1e-3, 9: 1.0, 10: 1e3}  # milli, units, kilo (others are rare on sensors)
_STATUS = {1: "ok", 2: "unknown", 3: "critical"}  # ok, unavailable, nonoperational
#: Most rows one walk may return (a poll must stay bounded).
MAX_ROWS = 5000
#: SNMPv3 protocols by the names ``hwfleet bmc set`` takes (pysnmp's constant names).
AUTH_PROTOCOLS = {
    "sha": "USM_AUTH_HMAC96_SHA",
    "sha224": "USM_AUTH_HMAC128_SHA224",
    "sha256": "USM_AUTH_HMAC192_SHA256",
    "sha384": "USM_AUTH_HMAC256_SHA384",
    "sha512": "USM_AUTH_HMAC384_SHA512",
}
PRIV_PROTOCOLS = {
    "aes": "USM_PRIV_CFB128_AES",
    "aes192": "USM_PRIV_CFB192_AES",
    "aes256": "USM_PRIV_CFB256_AES",
}
#: What pysnmp says when USM refuses us: the credentials, not the network.
_AUTH_FAILURES = (
    "unknown usm user",
    "wrong snmp pdu digest",
    "decryption error",
    "unsupported security level",
    "authorization",
    "not in time window",
    "ciphertext is broken",  # a wrong privacy passphrase
)


def check_v3(a: BmcAddress) -> None:
    """Refuse an SNMPv3 record that could not work or would not be authPriv."""
    if not a.username:
        if a.priv_password or a.auth_protocol or a.priv_protocol:
            raise BmcError("bad_input", "SNMPv3 settings need the v3 user (--snmp-v3-user)")
        return
    if (a.auth_protocol or "sha") not in AUTH_PROTOCOLS:
        known = ", ".join(AUTH_PROTOCOLS)
        raise BmcError("bad_input", f"SNMPv3 auth protocol must be one of {known}")
    if (a.priv_protocol or "aes") not in PRIV_PROTOCOLS:
        known = ", ".join(PRIV_PROTOCOLS)
        raise BmcError("bad_input", f"SNMPv3 privacy protocol must be one of {known}")
    # USM derives keys from passphrases of at least 8 characters (RFC 3414 §11.2).
    if len(a.password) < 8 or len(a.priv_password) < 8:
        raise BmcError(
            "bad_input",
            "SNMPv3 authPriv needs an authentication and a privacy passphrase, "
            "each of at least 8 characters",
        )


class SnmpDriver(BmcDriver):
    poller_defaults: ClassVar[dict[str, float]] = {"sdr": 60.0, "chassis": 15.0}

    def _run(self, coro: Any) -> Any:
        try:
            return asyncio.run(asyncio.wait_for(coro, self.timeout))
        except TimeoutError:
            raise BmcError("timeout", f"SNMP agent {self.address.address} did not answer") from None

    async def _target(self) -> tuple[Any, Any, Any]:
        from pysnmp.hlapi.v3arch import asyncio as h

        a = self.address
        target = await h.UdpTransportTarget.create(
            (a.address, a.port or 161), timeout=max(1.0, self.timeout / 3), retries=1
        )
        if a.username:
            credentials: Any = h.UsmUserData(
                a.username,
                authKey=a.password,
                privKey=a.priv_password,
                authProtocol=getattr(h, AUTH_PROTOCOLS[a.auth_protocol or "sha"]),
                privProtocol=getattr(h, PRIV_PROTOCOLS[a.priv_protocol or "aes"]),
            )
        else:  # v2c: what most BMCs and PDUs still speak
            credentials = h.CommunityData(a.password or "public", mpModel=1)  # noqa: S508
        return h.SnmpEngine(), credentials, target

    def _check(self, error_indication: Any, error_status: Any) -> None:
        if error_indication:
            text = str(error_indication)
            lowered = text.lower()
            kind: ErrorKind = (
                "timeout" if "timeout" in lowered or "no snmp response" in lowered else "protocol"
            )
            if any(words in lowered for words in _AUTH_FAILURES):
                kind = "auth"
            raise BmcError(kind, scrub(f"SNMP agent {self.address.address}: {text}", self.address))
        if error_status:
            raise BmcError(
                "protocol", f"SNMP agent {self.address.address}: {error_status.prettyPrint()}"
            )

    async def _get(self, oids: list[str]) -> dict[str, Any]:
        from pysnmp.hlapi.v3arch import asyncio as h

        engine, community, target = await self._target()
        try:
            err, status, _, binds = await h.get_cmd(
                engine,
                community,
                target,
                h.ContextData(),
                *(h.ObjectType(h.ObjectIdentity(o)) for o in oids),
            )
            self._check(err, status)
            return {str(name): _plain(value) for name, value in binds}
        finally:
            engine.close_dispatcher()

    async def _walk(self, root: str) -> dict[str, Any]:
        from pysnmp.hlapi.v3arch import asyncio as h

        engine, community, target = await self._target()
        out: dict[str, Any] = {}
        try:
            async for err, status, _, binds in h.walk_cmd(
                engine,
                community,
                target,
                h.ContextData(),
                h.ObjectType(h.ObjectIdentity(root)),
                lexicographicMode=False,
            ):
                self._check(err, status)
                for name, value in binds:
                    out[str(name)] = _plain(value)
                if len(out) >= MAX_ROWS:
                    break
        finally:
            engine.close_dispatcher()
        return out

    def get_oids(self, oids: list[str]) -> dict[str, Any]:
        return dict(self._run(self._get(oids)))

    def power(self, action: PowerAction) -> str:
        if action != "status":
            raise BmcError("unsupported", "SNMP has no standard power control")
        self._run(self._get([SYS_UPTIME]))  # answers: the agent (and its box) is up
        return "on"

    def chassis(self) -> dict[str, Any]:
        values = self._run(self._get([SYS_UPTIME]))
        return {"power": "on", "uptime_ticks": values.get(SYS_UPTIME)}

    def sensors(self) -> list[Sensor]:
        rows = self._run(self._walk(ENT_SENSOR))
        names = self._run(self._walk(ENT_NAME))
        out = []
        for oid, value in rows.items():
            if not oid.startswith(ENT_SENSOR + ".4."):
                continue
            index = oid.rsplit(".", 1)[-1]
            kind, units = _TYPES.get(int(rows.get(f"{ENT_SENSOR}.1.{index}", 1)), ("other", ""))
            scale = _SCALE.get(int(rows.get(f"{ENT_SENSOR}.2.{index}", 9)), 1.0)
            status = _STATUS.get(int(rows.get(f"{ENT_SENSOR}.5.{index}", 1)), "unknown")
            out.append(
                Sensor(
                    name=str(names.get(f"{ENT_NAME}.{index}", f"sensor {index}")),
                    kind=kind,
                    value=float(value) * scale if isinstance(value, int | float) else None,
                    units=units,
                    health=status,
                )
            )
        return out

    def sel(self) -> list[SelEntry]:
        raise BmcError("unsupported", "SNMP agents keep no IPMI system event log")


def _plain(value: Any) -> Any:
    """An SNMP value as JSON: integers stay integers, everything else its text."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return value.prettyPrint() if hasattr(value, "prettyPrint") else str(value)
