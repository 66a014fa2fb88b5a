"""Agent keys (DESIGN §6): list, accept, reject, delete, and single-use enrollment tokens.

The service behind it is the controller's ``KeyAdmin`` (its ``EnrollmentService``).
Responses never carry a CSR, a certificate body or a stored token hash; a new
token is shown exactly once, in the reply to the request that created it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field

from hwfleet.api.auth import require_token
from hwfleet.api.deps import KeysDep
from hwfleet.trust import tokens
from hwfleet.trust.csr import CsrError
from hwfleet.trust.keyadmin import KeyConflictError, KeyNotFoundError

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


async def _decide(
    action: Callable[[str], Awaitable[dict[str, Any]]], key_id: str
) -> dict[str, Any]:
    try:
        result = await action(key_id)
    except KeyNotFoundError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except KeyConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except (CsrError, ValueError) as exc:
        # A stored CSR that no longer passes the key policy cannot be signed.
        raise HTTPException(status.HTTP_409_CONFLICT, f"cannot sign key {key_id}: {exc}") from None
    return result


@router.get("/keys", response_model=list[Key])
async def list_keys(keys: KeysDep) -> list[dict[str, Any]]:
    return await keys.list_keys()


@router.post("/keys/tokens", response_model=TokenReply, status_code=status.HTTP_201_CREATED)
async def create_token(keys: KeysDep, body: TokenRequest | None = None) -> dict[str, str]:
    issued = await keys.issue_token((body or TokenRequest()).ttl)
    return {"token": issued.token, "expires_at": issued.expires_at.isoformat()}


@router.post("/keys/{key_id}/accept", response_model=Key)
async def accept_key(key_id: str, keys: KeysDep) -> dict[str, Any]:
    return await _decide(keys.accept, key_id)


@router.post("/keys/{key_id}/reject", response_model=Key)
async def reject_key(key_id: str, keys: KeysDep) -> dict[str, Any]:
    return await _decide(keys.reject, key_id)


@router.delete("/keys/{key_id}", response_model=Key)
async def delete_key(key_id: str, keys: KeysDep) -> dict[str, Any]:
    return await _decide(keys.delete, key_id)
