"""Machine diagnostics (seed 002, DESIGN §13) over REST.

``GET /api/v1/mdp/status[?ip=A]`` → the latest report of each machine (``ip``, ``machine``,
``ts``, ``received_at``, ``operations`` by name), the same document as
``hwfleet mdp status --json``; the header ``X-Mdp-Collecting`` says whether the controller
listens for reports at all (``mdp_report_listen``).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from hwfleet.api.auth import require_token
from hwfleet.api.deps import lookup
from hwfleet.api.services.mdp import MdpService

router = APIRouter(prefix="/api/v1/mdp", tags=["mdp"], dependencies=[Depends(require_token)])


def mdp_service(request: Request) -> MdpService:
    return lookup(request, MdpService, "machine diagnostics are not running")


MdpDep = Annotated[MdpService, Depends(mdp_service)]


@router.get("/status")
async def mdp_status(
    mdp: MdpDep, response: Response, ip: str | None = Query(None, description="one machine")
) -> list[dict[str, Any]]:
    """The latest diagnostics report of each machine, by address."""
    if ip is not None:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "ip: not an address"
            ) from None
    response.headers["X-Mdp-Collecting"] = "yes" if mdp.collecting else "no"
    return await mdp.status(ip)
