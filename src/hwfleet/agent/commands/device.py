"""Seed 004 device management: rename, admin password, trusted controller keys.

Parameter names follow fluxclient's ``UpnpTask``: ``rename(new_name)``,
``modify_password(old_password, new_password, reset_acl)``,
``add_trust(label, pem)``, ``list_trust()``, ``remove_trust(access_id)``.
``device.trust.add`` also takes a bare ``fingerprint`` instead of a PEM. Every
change is written to the agent's data dir before the reply, so a reply means
the change survives a restart. Network and Wi-Fi commands live in
:mod:`hwfleet.agent.commands.device_network`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from hwfleet.agent.access.adminpass import AdminPassword, PasswordError, WrongPasswordError
from hwfleet.agent.access.trustlist import (
    TrustList,
    TrustListError,
    TrustNotFoundError,
    TrustRefusedError,
    fingerprint_of_pem,
)
from hwfleet.agent.localstate import LocalStateError
from hwfleet.protocol.errors import ErrorCode, MethodError

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime

MAX_NAME = 64


class RenameParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    new_name: str


class SetPasswordParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    new_password: str
    old_password: str = ""
    #: fluxclient's default: a password change also drops every other trusted key.
    reset_acl: bool = True


class TrustAddParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    label: str = ""
    pem: str | None = None
    fingerprint: str | None = None


class TrustRemoveParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    access_id: str


def check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise MethodError("new_name: must not be empty", ErrorCode.BAD_PARAMS)
    if len(name) > MAX_NAME:
        raise MethodError(f"new_name: at most {MAX_NAME} characters", ErrorCode.BAD_PARAMS)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name):
        raise MethodError("new_name: control characters are not allowed", ErrorCode.BAD_PARAMS)
    return name


async def rename(rt: AgentRuntime, params: RenameParams) -> dict[str, Any]:
    name = check_name(params.new_name)
    async with rt.local.lock:
        old = rt.info.name
        try:
            rt.local.save_name(name)
        except (OSError, LocalStateError) as exc:
            raise MethodError(f"cannot save the name: {exc}") from None
        # Handshake, status and discovery all read rt.info, so they report it from now on.
        rt.info.name = name
    await rt.log("notice", "device renamed", old_name=old, name=name)
    return {"name": name, "old_name": old}


async def set_password(rt: AgentRuntime, params: SetPasswordParams) -> dict[str, Any]:
    async with rt.local.lock:
        try:
            await AdminPassword(rt.local).change(params.old_password, params.new_password)
        except WrongPasswordError as exc:
            raise MethodError(str(exc), ErrorCode.UNAUTHORIZED) from None
        except PasswordError as exc:
            raise MethodError(str(exc), ErrorCode.BAD_PARAMS) from None
        except (OSError, LocalStateError) as exc:
            raise MethodError(f"admin password store: {exc}") from None
        dropped = TrustList(rt.local).reset() if params.reset_acl else []
    rt.peers.revoke(entry.access_id for entry in dropped)
    removed = len(dropped)
    await rt.log("notice", "admin password changed", reset_acl=params.reset_acl, removed=removed)
    return {"changed": True, "reset_acl": params.reset_acl, "trust_removed": removed}


async def trust_list(rt: AgentRuntime, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return TrustList(rt.local).describe()
    except LocalStateError as exc:
        raise MethodError(str(exc)) from None


async def trust_add(rt: AgentRuntime, params: TrustAddParams) -> dict[str, Any]:
    if (params.pem is None) == (params.fingerprint is None):
        raise MethodError("give exactly one of pem or fingerprint", ErrorCode.BAD_PARAMS)
    try:
        access_id = (
            fingerprint_of_pem(params.pem) if params.pem is not None else str(params.fingerprint)
        )
        async with rt.local.lock:
            entry, added = TrustList(rt.local).add(access_id, params.label)
    except TrustListError as exc:
        raise MethodError(str(exc), ErrorCode.BAD_PARAMS) from None
    except (OSError, LocalStateError) as exc:
        raise MethodError(f"cannot save the trust list: {exc}") from None
    if added:
        await rt.log("notice", "controller key trusted", access_id=entry.access_id)
    return {**entry.to_doc(), "added": added}


async def trust_remove(rt: AgentRuntime, params: TrustRemoveParams) -> dict[str, Any]:
    try:
        async with rt.local.lock:
            entry = TrustList(rt.local).remove(params.access_id)
    except TrustListError as exc:
        raise MethodError(str(exc), ErrorCode.BAD_PARAMS) from None
    except TrustRefusedError as exc:
        raise MethodError(str(exc), ErrorCode.REFUSED) from None
    except TrustNotFoundError as exc:
        raise MethodError(str(exc), ErrorCode.NOT_FOUND) from None
    except (OSError, LocalStateError) as exc:
        raise MethodError(f"cannot save the trust list: {exc}") from None
    # Its sessions end now, not at their next reconnect: the list decides who is obeyed.
    dropped = rt.peers.revoke([entry.access_id])
    await rt.log("notice", "controller key removed", access_id=entry.access_id, sessions=dropped)
    return {**entry.to_doc(), "removed": True, "sessions_closed": dropped}
