"""Dashboard logins: the operator token in, a server-side session out (an HttpOnly cookie).

The token is posted once in the login form body (never in a URL) and compared in
constant time; the browser then holds only a random session id in an ``HttpOnly``,
``SameSite=Strict`` cookie (``Secure`` when the request came over HTTPS). Sessions live in
this process's memory: logout deletes one, a restart ends them all (a fresh login), and
one left unused for ``dashboard_session_idle`` seconds expires. The REST API never looks at
the cookie: ``/api/`` routes keep requiring ``Authorization: Bearer``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hwfleet.api.deps import lookup
from hwfleet.web.templating import render

COOKIE = "hwfleet_session"
#: Sessions kept at once: a login beyond it drops the one unused the longest.
MAX_SESSIONS = 1000
#: A login form body is a token and a few fields; nothing legitimate is larger.
MAX_FORM = 8 * 1024


@dataclass(slots=True)
class Session:
    sid: str
    csrf: str
    last_used: float


class Sessions:
    """The logged-in browsers of one API app (kept in memory, bounded)."""

    def __init__(self, operator_token: str, *, idle: float = 86400.0) -> None:
        self._token = operator_token
        self.idle = idle
        self._by_id: dict[str, Session] = {}

    def token_ok(self, supplied: str) -> bool:
        return hmac.compare_digest(supplied.strip().encode(), self._token.encode())

    def open(self) -> Session:
        if len(self._by_id) >= MAX_SESSIONS:
            oldest = min(self._by_id.values(), key=lambda s: s.last_used)
            del self._by_id[oldest.sid]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), time.monotonic())
        self._by_id[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        """The live session with this id (touching it), or None."""
        session = self._by_id.get(sid or "")
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_used > self.idle:
            del self._by_id[session.sid]
            return None
        session.last_used = now
        return session

    def alive(self, sid: str) -> bool:
        """Whether the session still exists (without counting this as a use)."""
        return sid in self._by_id

    def close(self, sid: str | None) -> None:
        self._by_id.pop(sid or "", None)


def sessions(request: Request) -> Sessions:
    return lookup(request, Sessions, "the dashboard is not running")


SessionsDep = Annotated[Sessions, Depends(sessions)]


def login_required(request: Request) -> HTTPException:
    """No valid session: a page load goes to the login form; htmx and SSE get a 401
    (htmx then loads the login page whole, through ``HX-Redirect``)."""
    if request.method == "GET" and not request.headers.get("hx-request"):
        return HTTPException(status.HTTP_303_SEE_OTHER, "log in", headers={"Location": "/login"})
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "not logged in (or the session ended): log in again",
        headers={"HX-Redirect": "/login"},
    )


def current_session(request: Request, store: SessionsDep) -> Session:
    session = store.get(request.cookies.get(COOKIE))
    if session is None:
        raise login_required(request)
    return session


SessionDep = Annotated[Session, Depends(current_session)]


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body as single values (its first value per name), size-capped."""
    body = await request.body()
    if len(body) > MAX_FORM:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> HTMLResponse:
    return render(request, "login.html", error=None)


@router.post("/login")
async def login(request: Request, store: SessionsDep) -> Response:
    form = await read_form(request)
    if not store.token_ok(form.get("token", "")):
        page = render(request, "login.html", error="wrong operator token")
        page.status_code = status.HTTP_401_UNAUTHORIZED
        return page
    session = store.open()
    reply = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
    reply.set_cookie(
        COOKIE,
        session.sid,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return reply


@router.post("/logout")
async def logout(request: Request, store: SessionsDep) -> Response:
    """Ends the session; needs the CSRF token so another site cannot log an operator out."""
    from hwfleet.web.csrf import check

    session = store.get(request.cookies.get(COOKIE))
    if session is not None:
        check(request, session, await read_form(request))
        store.close(session.sid)
    reply = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    reply.delete_cookie(COOKIE, path="/")
    return reply
