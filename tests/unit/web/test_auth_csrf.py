"""Dashboard sessions and CSRF checks, fast: the auth router on its own, in process (httpx)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from hwfleet import web
from hwfleet.web import auth, csrf
from hwfleet.web.auth import COOKIE, MAX_SESSIONS, Session, Sessions

TOKEN = "operator-token-for-tests"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(auth.router)
    web.provide_to(app, TOKEN, session_idle=60)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client


def request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "dash.test", **headers}.items()]
    return Request({"type": "http", "method": "POST", "path": "/x", "headers": raw})


async def test_login_with_the_token_opens_a_session(client: httpx.AsyncClient) -> None:
    reply = await client.post("/login", data={"token": TOKEN})
    assert reply.status_code == 303 and reply.headers["location"] == "/"
    cookie = reply.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; HTTPS sets it


async def test_a_wrong_or_missing_token_opens_nothing(client: httpx.AsyncClient) -> None:
    for data in ({"token": "nope"}, {}, {"token": TOKEN + "x"}):
        reply = await client.post("/login", data=data)
        assert reply.status_code == 401 and "set-cookie" not in reply.headers
        assert TOKEN not in reply.text


async def test_a_huge_login_body_is_refused(client: httpx.AsyncClient) -> None:
    reply = await client.post("/login", content=b"token=" + b"a" * (auth.MAX_FORM + 1))
    assert reply.status_code == 401


def test_logout_needs_the_csrf_token_and_ends_the_session() -> None:
    sessions = Sessions(TOKEN)
    session = sessions.open()
    with pytest.raises(csrf.CsrfError):
        csrf.check(request({}), session, {})
    csrf.check(request({}), session, {"csrf": session.csrf})
    sessions.close(session.sid)
    assert sessions.get(session.sid) is None


async def test_logout_over_http(client: httpx.AsyncClient) -> None:
    await client.post("/login", data={"token": TOKEN})
    sid = client.cookies[COOKIE]
    refused = await client.post("/logout", data={"csrf": "wrong"})
    assert refused.status_code == 403
    done = await client.post("/logout", data={"csrf": csrf_of(client, sid)})
    assert done.status_code == 303 and done.headers["location"] == "/login"


def csrf_of(client: httpx.AsyncClient, sid: str) -> str:
    app = client.app  # type: ignore[attr-defined]
    store = next(s for s in app.state.services if isinstance(s, Sessions))
    session = store.get(sid)
    assert session is not None
    return session.csrf


def test_csrf_takes_the_header_or_the_field_and_refuses_other_origins() -> None:
    session = Session("sid", "the-csrf", 0.0)
    csrf.check(request({"X-CSRF-Token": "the-csrf"}), session, {})
    csrf.check(request({"Origin": "http://dash.test"}), session, {"csrf": "the-csrf"})
    for headers, form in (
        ({"X-CSRF-Token": "other"}, {}),
        ({}, {"csrf": ""}),
        ({"Origin": "http://evil.test", "X-CSRF-Token": "the-csrf"}, {}),
        ({"Sec-Fetch-Site": "cross-site", "X-CSRF-Token": "the-csrf"}, {}),
        ({"Origin": "null", "X-CSRF-Token": "the-csrf"}, {}),
    ):
        with pytest.raises(csrf.CsrfError):
            csrf.check(request(headers), session, form)


def test_sessions_expire_when_idle_and_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    sessions = Sessions(TOKEN, idle=10)
    first = sessions.open()
    now[0] += 9
    assert sessions.get(first.sid) is first  # used: the idle clock restarts
    now[0] += 11
    assert sessions.get(first.sid) is None
    opened = [sessions.open() for _ in range(MAX_SESSIONS + 1)]
    assert sessions.get(opened[-1].sid) is not None
    assert sum(sessions.get(s.sid) is not None for s in opened) == MAX_SESSIONS
