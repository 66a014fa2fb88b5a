"""Dashboard logins: the operator token in, a server-side session out (an HttpOnly cookie).

The token is posted once in the login form body (never in a URL) and compared in
constant time; the browser then holds only a random session id in an ``HttpOnly``,
``SameSite=Strict`` cookie (``Secure`` when the request came over HTTPS). Sessions live in
the store (:mod:`hwfleet.store.web_sessions`, only a hash of each id), so a controller
restart keeps browsers logged in and every replica on the database knows them: logout
deletes the row (every replica then refuses the cookie), and one left unused for
``dashboard_session_idle`` seconds expires. The session's CSRF token is derived from its
id, so nothing secret is stored. The REST API never looks at the cookie: ``/api/`` routes
keep requiring ``Authorization: Bearer``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hwfleet.api.deps import lookup
from hwfleet.store import Store, Tx
from hwfleet.store.web_sessions import WebSessionRepository
from hwfleet.types import utcnow
from hwfleet.web.templating import render

COOKIE = "hwfleet_session"
#: Sessions kept at once: a login beyond it drops the one unused the longest.
MAX_SESSIONS = 1000
#: A login form body is a token and a few fields; nothing legitimate is larger.
MAX_FORM = 8 * 1024
#: A session's last use is written at most this often (not one write per page load).
TOUCH_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    csrf: str

    @classmethod
    def of(cls, sid: str) -> Session:
        return cls(sid, csrf_of(sid))


def csrf_of(sid: str) -> str:
    """The session's CSRF token: an HMAC of its id, so only its holder (and the server,
    while the request is served) can know it, and the store keeps nothing secret."""
    return hmac.new(sid.encode(), b"hwfleet dashboard csrf", hashlib.sha256).hexdigest()


def id_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Sessions:
    """The logged-in browsers, in the store (shared by replicas, kept across restarts)."""

    def __init__(
        self,
        operator_token: str,
        store: Store,
        *,
        idle: float = 86400.0,
        limit: int = MAX_SESSIONS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._token = operator_token
        self._store = store
        self.idle = idle
        self.limit = limit
        self._clock = clock
        #: Called when this instance logs a session out (its open live streams end now;
        #: other replicas' streams notice at their next check of the store).
        self._watchers: dict[str, set[Callable[[], None]]] = {}

    def watch(self, sid: str, ended: Callable[[], None]) -> Callable[[], None]:
        """Call ``ended`` when this instance closes ``sid``; returns the way to stop."""
        self._watchers.setdefault(sid, set()).add(ended)

        def unwatch() -> None:
            watchers = self._watchers.get(sid)
            if watchers is not None:
                watchers.discard(ended)
                if not watchers:
                    del self._watchers[sid]

        return unwatch

    def token_ok(self, supplied: str) -> bool:
        return hmac.compare_digest(supplied.strip().encode(), self._token.encode())

    async def open(self) -> Session:
        session = Session.of(secrets.token_urlsafe(32))
        now = self._clock()

        async def add(tx: Tx) -> None:
            repo = WebSessionRepository(tx.conn)
            await repo.expire(now - timedelta(seconds=self.idle))
            if await repo.count() >= self.limit:
                await repo.drop_oldest(self.limit - 1)
            await repo.add(id_hash(session.sid), now)

        await self._store.write(add)
        return session

    async def get(self, sid: str | None) -> Session | None:
        """The live session with this id (counting this as a use), or None."""
        if not sid:
            return None
        key, now = id_hash(sid), self._clock()
        async with self._store.tx(readonly=True) as tx:
            row = await WebSessionRepository(tx.conn).get(key)
        if row is None:
            return None
        unused = (now - row.last_used).total_seconds()
        if unused > self.idle:
            await self._store.write(lambda tx: WebSessionRepository(tx.conn).delete(key))
            return None
        if unused > min(TOUCH_EVERY, self.idle / 10):
            await self._store.write(lambda tx: WebSessionRepository(tx.conn).touch(key, now))
        return Session.of(sid)

    async def alive(self, sid: str) -> bool:
        """Whether the session still exists and has not expired (not counted as a use)."""
        async with self._store.tx(readonly=True) as tx:
            row = await WebSessionRepository(tx.conn).get(id_hash(sid))
        return row is not None and (self._clock() - row.last_used).total_seconds() <= self.idle

    async def close(self, sid: str | None) -> None:
        if sid:
            key = id_hash(sid)
            await self._store.write(lambda tx: WebSessionRepository(tx.conn).delete(key))
            for ended in list(self._watchers.pop(sid, ())):
                ended()


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


async def current_session(request: Request, store: SessionsDep) -> Session:
    session = await store.get(request.cookies.get(COOKIE))
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
    session = await store.open()
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

    session = await store.get(request.cookies.get(COOKIE))
    if session is not None:
        check(request, session, await read_form(request))
        await store.close(session.sid)
    reply = RedirectResponse("/login", status.HTTP_303_SEE_OTHER)
    reply.delete_cookie(COOKIE, path="/")
    return reply
