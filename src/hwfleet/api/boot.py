"""HTTP boot (DESIGN §14): iPXE scripts and boot files for machines, boot status for operators.

``/boot/…`` is what a booting machine fetches, before it has any credential, so it
needs no operator token; it serves only iPXE scripts and files under the boot files
directory (resolved inside it: no ``..``, no links out), never fleet data. A discovery
script carries an enrollment token only for the address Kea leased to that MAC.
``/api/v1/boot/…`` is the operator's view and needs the token, like every /api route.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, Field

from hwfleet.api.auth import require_token
from hwfleet.api.deps import lookup
from hwfleet.boot.scripts import NotLeasedError
from hwfleet.boot.service import BootService
from hwfleet.boot.tftp import UNKNOWN_NODE
from hwfleet.bus.base import RpcError
from hwfleet.protocol.mac import normalize_mac

IPXE = "text/plain; charset=utf-8"

#: The first script iPXE runs (DHCP hands its URL to iPXE clients): it chains to the
#: per-MAC script. ``${netX/mac:hexhyp}`` is the MAC of the interface that booted.
CHAIN = """#!ipxe
chain {base}/boot/script?mac=${{netX/mac:hexhyp}} || goto failed
exit
:failed
echo hwfleet: could not fetch the boot script; retrying in 10 s
sleep 10
chain {base}/boot/ipxe
"""


def boot_service(request: Request) -> BootService:
    return lookup(request, BootService, "boot services are off (hwfleet server --boot-interface)")


BootDep = Annotated[BootService, Depends(boot_service)]
boot_router = APIRouter(prefix="/boot", tags=["boot"])
router = APIRouter(prefix="/api/v1/boot", tags=["boot"], dependencies=[Depends(require_token)])


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


@boot_router.get("/ipxe", response_class=PlainTextResponse)
async def chain_script(boot: BootDep) -> PlainTextResponse:
    """The chain script every iPXE gets first."""
    return PlainTextResponse(CHAIN.format(base=boot.params.http_base.rstrip("/")), media_type=IPXE)


@boot_router.get("/script", response_class=PlainTextResponse)
async def node_script(boot: BootDep, request: Request, mac: str) -> PlainTextResponse:
    """The machine's iPXE script: its active graph's profile, discovery, or local disk."""
    try:
        mac = normalize_mac(mac)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    client = _client(request)
    try:
        script = await boot.scripts.for_mac(mac, client)
    except NotLeasedError as exc:
        await boot.announce(f"http.response.{UNKNOWN_NODE}", _event(client, "script", 403))
        raise HTTPException(403, str(exc)) from None
    except (LookupError, ValueError) as exc:  # a graph named a missing or unsafe profile
        raise HTTPException(500, f"boot profile: {exc}") from None
    body = {**_event(client, "script", 200), "nodeId": script.node.id, "profile": script.profile}
    await boot.announce(f"http.response.{script.node.id}", body)
    return PlainTextResponse(script.text, media_type=IPXE)


@boot_router.get("/files/{name:path}")
async def boot_file(boot: BootDep, request: Request, name: str) -> FileResponse:
    """A kernel, initrd or image under the boot files directory; Range requests work."""
    root = boot.files_dir.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404, "no such boot file")
    client = _client(request)
    node = await boot.node_of_ip(client) or UNKNOWN_NODE
    await boot.announce(f"http.response.{node}", {**_event(client, name, 200), "nodeId": node})
    return FileResponse(path, media_type="application/octet-stream")


def _event(client: str, path: str, status: int) -> dict[str, Any]:
    return {"ip": client, "path": path, "status": status}


class PinRequest(BaseModel):
    mac: str = Field(description="MAC address")
    ip: str | None = Field(None, description="IPv4 address (default: the MAC's current lease)")


@router.get("/status")
async def status(boot: BootDep) -> dict[str, Any]:
    """Kea (alive, pid, restarts), the range, TFTP and HTTP addresses."""
    return await boot.status()


@router.get("/leases")
async def leases(boot: BootDep) -> dict[str, Any]:
    """Kea's lease table and hwfleet's pins (``peekLeaseTable``)."""
    return await _rpc(boot, "peekLeaseTable", {})


@router.post("/pins")
async def pin(boot: BootDep, body: PinRequest) -> dict[str, Any]:
    """Pin a MAC to an address (``pinMac``); 409 on a conflict."""
    params: dict[str, Any] = {"mac": body.mac}
    if body.ip is not None:
        params["ip"] = body.ip
    return await _rpc(boot, "pinMac", params)


_STATUS = {
    "bad_params": 400,
    "not_found": 404,
    "conflict": 409,
    "unsupported": 409,  # proxy mode: the site DHCP server owns the addresses
    "unavailable": 503,
}


async def _rpc(boot: BootService, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A ``dhcp`` method called in-process, its errors as HTTP statuses."""
    try:
        return await boot.rpc.call(method, params)
    except RpcError as exc:
        raise HTTPException(_STATUS.get(exc.code, 502), exc.msg) from None
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
