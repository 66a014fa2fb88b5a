"""Dashboard sessions and CSRF checks, fast: the auth router on its own, in process (httpx)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI, Request

from hwfleet import web
from hwfleet.store import Store
from hwfleet.web import auth, csrf
from hwfleet.web.auth import COOKIE, MAX_SESSIONS, Session, Sessions, id_hash

TOKEN = "operator-token-for-tests"


@pytest.fixture
async def client(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(auth.router)
    web.provide_to(app, TOKEN, store, session_idle=60)
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


async def test_logout_needs_the_csrf_token_and_ends_the_session(store: Store) -> None:
    sessions = Sessions(TOKEN, store)
    session = await sessions.open()
    with pytest.raises(csrf.CsrfError):
        csrf.check(request({}), session, {})
    csrf.check(request({}), session, {"csrf": session.csrf})
    await sessions.close(session.sid)
    assert await sessions.get(session.sid) is None


async def test_the_store_keeps_only_a_hash_and_another_instance_shares_it(store: Store) -> None:
    """What a second replica (or a restarted controller) sees: the same rows."""
    first, second = Sessions(TOKEN, store), Sessions(TOKEN, store)
    session = await first.open()
    assert await second.get(session.sid) == session  # same id, same CSRF token
    async with store.tx(readonly=True) as tx:
        rows = (await tx.conn.exec_driver_sql("SELECT id_hash FROM web_sessions")).all()
    assert [r[0] for r in rows] == [id_hash(session.sid)] and session.sid not in str(rows)
    await second.close(session.sid)
    assert await first.get(session.sid) is None and not await first.alive(session.sid)
    assert await first.get("not-a-session") is None and await first.get(None) is None


async def test_logout_over_http(client: httpx.AsyncClient) -> None:
    await client.post("/login", data={"token": TOKEN})
    sid = client.cookies[COOKIE]
    refused = await client.post("/logout", data={"csrf": "wrong"})
    assert refused.status_code == 403
    done = await client.post("/logout", data={"csrf": Session.of(sid).csrf})
    assert done.status_code == 303 and done.headers["location"] == "/login"
    app = client.app  # type: ignore[attr-defined]
    sessions = next(s for s in app.state.services if isinstance(s, Sessions))
    assert await sessions.get(sid) is None


def test_csrf_takes_the_header_or_the_field_and_refuses_other_origins() -> None:
    session = Session("sid", "the-csrf")
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


async def test_sessions_expire_when_idle_and_are_bounded(store: Store) -> None:
    now = [datetime(2026, 12, 3, tzinfo=UTC)]
    sessions = Sessions(TOKEN, store, idle=100, limit=5, clock=lambda: now[0])
    first = await sessions.open()
    now[0] += timedelta(seconds=90)
    assert await sessions.get(first.sid) == first  # used: the idle clock restarts
    now[0] += timedelta(seconds=90)
    assert await sessions.alive(first.sid)
    assert await sessions.get(first.sid) == first
    now[0] += timedelta(seconds=101)
    assert not await sessions.alive(first.sid)
    assert await sessions.get(first.sid) is None
    opened = []
    for _ in range(6):
        now[0] += timedelta(milliseconds=1)
        opened.append(await sessions.open())
    assert await sessions.get(opened[-1].sid) is not None
    assert await sessions.get(opened[0].sid) is None  # the one unused longest made room
    async with store.tx(readonly=True) as tx:
        count = (await tx.conn.exec_driver_sql("SELECT count(*) FROM web_sessions")).scalar()
    assert count == 5
    assert Sessions(TOKEN, store).limit == MAX_SESSIONS
