"""Device management (seed 004) over REST: rename, password, network, Wi-Fi, trusted keys.

Each route calls one ``device.*`` method on the connected agent and maps its
error codes onto HTTP (bad_params 422, unauthorized 403, refused 409,
not_found 404, unknown device 404, not connected 409, no answer 504). Each change is recorded as
an event (``device.renamed.<uuid>``, ``device.password_changed.<uuid>``,
``device.network_changed.<uuid>``, ``device.trust_added.<uuid>``,
``device.trust_removed.<uuid>``) carrying no secret.

The password and network bodies are read as plain JSON objects, not pydantic
models: a pydantic validation error echoes the input, and the input holds the
password or the Wi-Fi key. The agent validates every field and names the wrong one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from hwfleet.api.auth import require_token
from hwfleet.api.deps import DevicesDep, EventsDep
from hwfleet.api.services.devices import DevicesService
from hwfleet.api.services.events import EventsService
from hwfleet.protocol import methods
from hwfleet.protocol.errors import CallTimeoutError, ErrorCode, RemoteError, SessionClosedError

router = APIRouter(
    prefix="/api/v1/devices/{uuid}", tags=["device admin"], dependencies=[Depends(require_token)]
)

SECRET_KEYS = frozenset({"psk", "wepkey", "password", "old_password", "new_password"})
#: Applying network settings may wait on NetworkManager (``nmcli -w 30``) and a DHCP lease.
NETWORK_TIMEOUT = 90.0
WIFI_TIMEOUT = 45.0
_HTTP_FOR_CODE: dict[str, int] = {
    ErrorCode.BAD_PARAMS: status.HTTP_422_UNPROCESSABLE_CONTENT,
    ErrorCode.UNAUTHORIZED: status.HTTP_403_FORBIDDEN,
    ErrorCode.REFUSED: status.HTTP_409_CONFLICT,
    ErrorCode.NOT_FOUND: status.HTTP_404_NOT_FOUND,
    ErrorCode.UNKNOWN_METHOD: status.HTTP_501_NOT_IMPLEMENTED,
}


class RenameRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, description="the device's new name")


class TrustAddRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(default="", max_length=128)
    pem: str | None = Field(default=None, description="a PEM certificate or public key")
    fingerprint: str | None = Field(default=None, description="SHA256:… (or bare hex)")


def _body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """An OpenAPI request body for a route that reads raw JSON (so /docs still shows it)."""
    schema = {"type": "object", "properties": properties, "required": required}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_STR, _BOOL = {"type": "string"}, {"type": "boolean"}
PASSWORD_BODY = _body(
    {"old_password": _STR, "new_password": _STR, "reset_acl": {**_BOOL, "default": True}},
    ["new_password"],
)
NETWORK_BODY = _body(
    {
        "method": {"enum": ["dhcp", "static"]},
        "interface": _STR,
        "ipaddr": _STR,
        "mask": {"oneOf": [{"type": "integer"}, _STR]},
        "route": _STR,
        "ns": {"oneOf": [{"type": "array", "items": _STR}, _STR]},
        "wifi_mode": {"enum": ["client", "host"]},
        "ssid": _STR,
        "security": {"enum": ["None", "WEP", "WPA-PSK", "WPA2-PSK"]},
        "psk": _STR,
        "wepkey": _STR,
    },
    [],
)


def scrub(value: dict[str, Any]) -> dict[str, Any]:
    """Mask every secret-named field, however deep: a defence against an agent that leaks one."""
    return {k: "***" if k in SECRET_KEYS and v else _scrub_nested(v) for k, v in value.items()}


def _scrub_nested(value: object) -> object:
    if isinstance(value, dict):
        return scrub(value)
    if isinstance(value, list):
        return [_scrub_nested(item) for item in value]
    return value


async def _object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the body must be a JSON object")
    return body


async def call(
    devices: DevicesService,
    uuid: str,
    method: str,
    params: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """One agent call, its failures turned into HTTP errors that name the cause."""
    try:
        reply = await devices.call(uuid, method, params or {}, timeout)
    except RemoteError as exc:
        code = _HTTP_FOR_CODE.get(exc.code, status.HTTP_502_BAD_GATEWAY)
        raise HTTPException(code, f"{method}: {exc.msg}") from None
    except (CallTimeoutError, SessionClosedError) as exc:
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, str(exc)) from None
    return scrub(reply)


async def emit(events: EventsService, kind: str, uuid: str, payload: dict[str, Any]) -> None:
    await events.emit(f"device.{kind}.{uuid}", {"uuid": uuid, **scrub(payload)}, device_uuid=uuid)


@router.post("/rename")
async def rename(
    uuid: str, body: RenameRequest, devices: DevicesDep, events: EventsDep
) -> dict[str, Any]:
    """Rename the device; it keeps the name across restarts and reports it from now on."""
    reply = await call(devices, uuid, methods.DEVICE_RENAME, {"new_name": body.name})
    await devices.record_name(uuid, reply["name"])
    await emit(events, "renamed", uuid, {"name": reply["name"], "old_name": reply["old_name"]})
    return {"uuid": uuid, **reply}


@router.post("/password", openapi_extra=PASSWORD_BODY)
async def set_password(
    uuid: str, request: Request, devices: DevicesDep, events: EventsDep
) -> dict[str, Any]:
    """Body ``{"old_password", "new_password", "reset_acl": true}`` (seed 004's fields).

    A wrong ``old_password`` is 403. ``reset_acl`` (default true) drops every
    trusted controller key except the one of this controller.
    """
    params = await _object(request)
    reply = await call(devices, uuid, methods.DEVICE_SET_PASSWORD, params)
    await emit(events, "password_changed", uuid, {k: v for k, v in reply.items() if k != "changed"})
    return {"uuid": uuid, **reply}


@router.get("/network")
async def get_network(
    uuid: str, devices: DevicesDep, interface: str | None = None
) -> dict[str, Any]:
    """The device's network settings (a Wi-Fi key shows as ``"***"``)."""
    params = {"interface": interface} if interface else {}
    return {"uuid": uuid, **await call(devices, uuid, methods.DEVICE_NETWORK_GET, params)}


@router.put("/network", openapi_extra=NETWORK_BODY)
async def set_network(
    uuid: str, request: Request, devices: DevicesDep, events: EventsDep
) -> dict[str, Any]:
    """Body: ``method`` (dhcp | static), ``interface``, ``ipaddr``, ``mask`` (prefix or dotted),
    ``route``, ``ns`` (list of IPs), ``wifi_mode`` (client | host), ``ssid``, ``security``
    (None | WEP | WPA-PSK | WPA2-PSK), ``psk``, ``wepkey``. A simulated device records them."""
    params = await _object(request)
    reply = await call(devices, uuid, methods.DEVICE_NETWORK_SET, params, NETWORK_TIMEOUT)
    await emit(events, "network_changed", uuid, {"network": reply.get("network", {})})
    return {"uuid": uuid, **reply}


@router.get("/wifi")
async def wifi(uuid: str, devices: DevicesDep, interface: str | None = None) -> dict[str, Any]:
    """Wi-Fi networks the device can see: ``{"wifi": [{ssid, signal, security}]}``."""
    params = {"interface": interface} if interface else {}
    return {
        "uuid": uuid,
        **await call(devices, uuid, methods.DEVICE_WIFI_LIST, params, WIFI_TIMEOUT),
    }


@router.get("/trust")
async def list_trust(uuid: str, devices: DevicesDep) -> dict[str, Any]:
    """The controller keys the device obeys; ``current`` is this controller's."""
    return {"uuid": uuid, **await call(devices, uuid, methods.DEVICE_TRUST_LIST)}


@router.post("/trust")
async def add_trust(
    uuid: str, body: TrustAddRequest, devices: DevicesDep, events: EventsDep
) -> dict[str, Any]:
    """Trust another controller key (a PEM certificate or public key, or a fingerprint)."""
    params = body.model_dump(exclude_none=True)
    reply = await call(devices, uuid, methods.DEVICE_TRUST_ADD, params)
    if reply.get("added"):
        await emit(
            events, "trust_added", uuid, {"access_id": reply["access_id"], "label": reply["label"]}
        )
    return {"uuid": uuid, **reply}


@router.delete("/trust/{access_id}")
async def remove_trust(
    uuid: str, access_id: str, devices: DevicesDep, events: EventsDep
) -> dict[str, Any]:
    """Stop trusting a key; removing this controller's own key is refused (409)."""
    params = {"access_id": access_id}  # Starlette has already percent-decoded the path
    reply = await call(devices, uuid, methods.DEVICE_TRUST_REMOVE, params)
    await emit(events, "trust_removed", uuid, {"access_id": reply["access_id"]})
    return {"uuid": uuid, **reply}
