"""Validating scan replies from ``hwinfo_queue``: a good reply, or a bad one with its reason.

A bad reply must fail only its own device, so even a reply we refuse is
picked apart far enough to say *which* device sent it (``operationid``,
``uuid``, ``sn``). Only when a reply names no scan or no device at all is it
unattributable, and then the caller dead-letters it.

Two shapes are accepted: hwfleet's (``macinfo`` a list of ``{interface,
macaddr}``, with ``uuid`` and ``pci``) and that of seed 000's reference device
client (``macinfo`` an object ``{"<iface>": {"macaddr": …}}``, no uuid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from hwfleet.integrations.mes_records import MacEntry
from hwfleet.protocol.inventory import HwInfo, ScanNic
from hwfleet.types import Serial

#: Largest reply accepted (the wire protocol's line limit).
MAX_REPLY_BYTES = 1 << 20


class _Ident(msgspec.Struct):
    """The identifying fields of a reply, whatever else it holds."""

    operationid: Any = None
    uuid: Any = None
    sn: Any = None


@dataclass(frozen=True, slots=True)
class Reply:
    """A valid scan reply."""

    operationid: int
    sn: Serial
    uuid: str
    macs: tuple[MacEntry, ...]
    hwinfo: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BadReply:
    """A reply refused with ``reason``; the identifying fields are those that could be read."""

    reason: str
    operationid: int | None = None
    uuid: str | None = None
    sn: Serial | None = None


class _ReferenceNic(msgspec.Struct):
    macaddr: str


class _ReferenceReply(msgspec.Struct):
    """Seed 000's reference client: ``"macinfo": {"<iface>": {"macaddr": ...}}``, no uuid."""

    operationid: int
    sn: int | str
    macinfo: dict[str, _ReferenceNic] = msgspec.field(default_factory=dict)


def _reference(body: bytes) -> HwInfo | None:
    """The reply in the reference client's shape as an ``HwInfo``; None if it is not that."""
    try:
        ref = msgspec.json.decode(body, type=_ReferenceReply)
    except msgspec.DecodeError:  # (ValidationError included)
        return None
    nics = [ScanNic(interface=name, macaddr=nic.macaddr) for name, nic in ref.macinfo.items()]
    return HwInfo(operationid=ref.operationid, sn=ref.sn, macinfo=nics)


def _identify(body: bytes, reason: str) -> BadReply:
    try:
        ident = msgspec.json.decode(body, type=_Ident)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return BadReply(reason)
    op = ident.operationid if type(ident.operationid) is int else None
    uuid = ident.uuid if isinstance(ident.uuid, str) and 0 < len(ident.uuid) <= 64 else None
    sn = ident.sn if _good_serial(ident.sn) else None
    return BadReply(reason, op, uuid, sn)


def _good_serial(value: object) -> bool:
    if type(value) is int:
        return True
    return isinstance(value, str) and 0 < len(value.strip()) <= 128


def parse_reply(body: bytes, *, max_bytes: int = MAX_REPLY_BYTES) -> Reply | BadReply:
    """Decode and check one reply body."""
    if len(body) > max_bytes:
        return _identify(
            body, f"scan reply of {len(body)} bytes exceeds the {max_bytes}-byte limit"
        )
    try:
        info = msgspec.json.decode(body, type=HwInfo)
    except msgspec.ValidationError as exc:  # (a subclass of DecodeError: test it first)
        reference = _reference(body)
        if reference is None:
            return _identify(body, f"scan reply is malformed: {exc}")
        info = reference
    except msgspec.DecodeError as exc:
        return BadReply(f"scan reply is not JSON: {exc}")
    if not _good_serial(info.sn):
        return _identify(body, f"scan reply has an unusable sn {info.sn!r}")
    if info.uuid and len(info.uuid) > 64:
        return BadReply(
            "scan reply uuid is longer than 64 characters", info.operationid, None, info.sn
        )
    macs: list[MacEntry] = []
    for index, nic in enumerate(info.macinfo):
        try:
            macs.append(MacEntry(interface=nic.interface, macaddr=nic.macaddr.strip()))
        except ValueError as exc:
            return BadReply(
                f"scan reply macinfo[{index}] ({nic.interface}): {exc}",
                info.operationid,
                info.uuid or None,
                info.sn,
            )
    hwinfo = msgspec.to_builtins(info)
    return Reply(info.operationid, info.sn, info.uuid, tuple(macs), hwinfo)
