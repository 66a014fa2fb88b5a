"""Agent keys (DESIGN §6): list, accept, reject, delete, and single-use enrollment tokens.

The service behind it is ``request.app.state.ctl.keys`` (an ``EnrollmentService``).
Responses never carry a CSR, a certificate body or a stored token hash; a new
token is shown exactly once, in the reply to the request that created it.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field

from hwfleet.api.auth import require_token
from hwfleet.trust import tokens
from hwfleet.trust.csr import CsrError
from hwfleet.trust.keyadmin import KeyAdmin, KeyConflict, KeyNotFound

router = APIRouter(prefix="/api/v1", tags=["keys"], dependencies=[Depends(require_token)])


class Key(BaseModel):
    id: str
    device_uuid: str
    fingerprint: str
    state: str
    source: str
    reason: str | None
    created_at: str
    decided_at: str | None


class TokenRequest(BaseModel):
    ttl: float = Field(
        default=tokens.DEFAULT_TTL,
        ge=tokens.MIN_TTL,
        le=tokens.MAX_TTL,
        description="seconds the token stays valid (1 s to 30 days)",
    )


class TokenReply(BaseModel):
    token: str
    expires_at: str


def _keys(request: Request) -> KeyAdmin:
    service: KeyAdmin = request.app.state.ctl.keys
    return service


async def _decide(action: Any, key_id: str) -> dict[str, Any]:
    try:
        result: dict[str, Any] = await action(key_id)
    except KeyNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except KeyConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except (CsrError, ValueError) as exc:
        # A stored CSR that no longer passes the key policy cannot be signed.
        raise HTTPException(status.HTTP_409_CONFLICT, f"cannot sign key {key_id}: {exc}") from None
    return result


@router.get("/keys", response_model=list[Key])
async def list_keys(request: Request) -> list[dict[str, Any]]:
    return await _keys(request).list_keys()


@router.post("/keys/tokens", response_model=TokenReply, status_code=status.HTTP_201_CREATED)
async def create_token(request: Request, body: TokenRequest | None = None) -> dict[str, str]:
    issued = await _keys(request).issue_token((body or TokenRequest()).ttl)
    return {"token": issued.token, "expires_at": issued.expires_at.isoformat()}


@router.post("/keys/{key_id}/accept", response_model=Key)
async def accept_key(key_id: str, request: Request) -> dict[str, Any]:
    return await _decide(_keys(request).accept, key_id)


@router.post("/keys/{key_id}/reject", response_model=Key)
async def reject_key(key_id: str, request: Request) -> dict[str, Any]:
    return await _decide(_keys(request).reject, key_id)


@router.delete("/keys/{key_id}", response_model=Key)
async def delete_key(key_id: str, request: Request) -> dict[str, Any]:
    return await _decide(_keys(request).delete, key_id)
