"""CSRF protection for the dashboard's state-changing requests (session-bound tokens).

Every session has its own random CSRF token. Forms carry it as a hidden ``csrf`` field
and htmx sends it as ``X-CSRF-Token`` (the page's ``hx-headers``); a POST without the
session's token, or from another origin, is refused with 403 before anything runs.
``SameSite=Strict`` already keeps the cookie off cross-site requests: this is the second
lock, for browsers or proxies that do not honour it.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, status

from hwfleet.web.auth import Session

HEADER = "x-csrf-token"
FIELD = "csrf"


class CsrfError(HTTPException):
    def __init__(self, why: str) -> None:
        super().__init__(status.HTTP_403_FORBIDDEN, f"CSRF check failed: {why}")


def same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def check(request: Request, session: Session, form: dict[str, str]) -> None:
    """Raise :class:`CsrfError` unless the request carries this session's token."""
    if not same_origin(request):
        raise CsrfError("cross-origin request")
    supplied = request.headers.get(HEADER) or form.get(FIELD, "")
    if not supplied or not hmac.compare_digest(supplied.encode(), session.csrf.encode()):
        raise CsrfError("missing or wrong token (reload the page)")
