"""Operator-token authentication for the REST API (DESIGN §6).

The token is generated at first start into ``<data-dir>/operator.token`` with
mode 0600. Requests carry it as ``Authorization: Bearer <token>``; it is
compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from fastapi import HTTPException, Request, status

TOKEN_FILE = "operator.token"  # noqa: S105 - a file name, not a secret


def load_or_create_token(data_dir: str | os.PathLike[str]) -> str:
    """Read the operator token, creating it (0600) on first start."""
    path = Path(data_dir) / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        token = path.read_text(encoding="ascii").strip()
        if token:
            return token
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
    os.chmod(path, 0o600)
    return token


UNAUTHORIZED = (
    "missing or wrong operator token (Authorization: Bearer <token>; "
    "see <data-dir>/operator.token or HWFLEET_TOKEN)"
)


def token_matches(header: str, expected: str) -> bool:
    """Whether an ``Authorization`` header carries the operator token (constant time)."""
    scheme, _, supplied = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        supplied.strip().encode(), expected.encode()
    )


async def require_token(request: Request) -> None:
    """FastAPI dependency: 401 unless the bearer token matches.

    :class:`~hwfleet.api.limits.RequestGuard` already refuses such a request before its
    body is read; this keeps each router safe on its own (and documents the scheme).
    """
    if not token_matches(
        request.headers.get("authorization", ""), request.app.state.operator_token
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
        )
