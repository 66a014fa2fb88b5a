"""REST: what the controller's discovery browser has seen, and scans on demand.

The service is the controller's started ``DiscoveryBrowser`` (the controller
decides its interface and probes; nothing multicasts out of a real interface unless
the operator named it).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from hwfleet.api.auth import require_token
from hwfleet.api.deps import DiscoveryDep

router = APIRouter(prefix="/api/v1", tags=["discovery"], dependencies=[Depends(require_token)])

State = Literal["online", "stale", "offline"]


class DiscoveryScanRequest(BaseModel):
    """Run one scan now: listen ``timeout`` seconds, also probing these addresses/CIDRs."""

    timeout: float = Field(3.0, gt=0, le=60, description="seconds to listen")
    probe: list[str] = Field(default_factory=list, max_length=64, description="ADDR or CIDR")


@router.get("/discovery")
async def list_discovered(
    browser: DiscoveryDep, state: State | None = None, spoofed: bool | None = None
) -> list[dict[str, Any]]:
    """Every device seen: DESIGN §7 metadata plus fingerprint, signed, spoofed, state."""
    docs = [d.to_json() for d in browser.devices()]
    if state is not None:
        docs = [d for d in docs if d["state"] == state]
    if spoofed is not None:
        docs = [d for d in docs if d["spoofed"] == spoofed]
    return docs


@router.get("/discovery/stats")
async def discovery_stats(browser: DiscoveryDep) -> dict[str, int]:
    """Packet counters: received, accepted, bad_<reason>, spoofed, unsolicited, replayed."""
    return browser.stats()


@router.post("/discovery/scan")
async def scan_now(browser: DiscoveryDep, body: DiscoveryScanRequest) -> list[dict[str, Any]]:
    """Query now and return the devices that answered within the timeout."""
    try:
        found = await browser.scan(body.timeout, probe=body.probe)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return [d.to_json() for d in found]
