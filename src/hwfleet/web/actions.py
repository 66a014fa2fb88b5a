"""The dashboard's actions (POST): ping, run a command, maintenance, start a scan, keys.

Every action needs a live session and its CSRF token (:mod:`hwfleet.web.csrf`), checked
before the action runs. From htmx an action answers a small status fragment (or, for a new
scan, ``HX-Redirect`` to its page); a plain form post is redirected back to its page.
Failures a user can act on (device offline, a scan already running, bad JSON) are shown as
messages, never as a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from hwfleet.api.deps import DevicesDep, KeysDep, ScansDep
from hwfleet.errors import HwfleetError
from hwfleet.protocol.methods import DEVICE_MAINTENANCE
from hwfleet.web import csrf
from hwfleet.web.auth import SessionDep, read_form
from hwfleet.web.templating import render, wants_fragment

router = APIRouter(include_in_schema=False)
ACTION_TIMEOUT = 15.0


async def checked_form(request: Request, session: SessionDep) -> dict[str, str]:
    form = await read_form(request)
    csrf.check(request, session, form)
    return form


def outcome(request: Request, back: str, ok: bool, message: str) -> Response:
    if wants_fragment(request):
        reply = render(request, "_result.html", ok=ok, message=message)
        reply.headers["HX-Trigger"] = "refresh"  # the page's live region reloads now
        return reply
    return RedirectResponse(back, status.HTTP_303_SEE_OTHER)


async def attempt(action: Callable[[], Awaitable[str]]) -> tuple[bool, str]:
    """Run an action; a refusal the operator can act on becomes a message."""
    try:
        return True, await action()
    except HTTPException as exc:
        return False, str(exc.detail)
    except (HwfleetError, ValueError, TimeoutError) as exc:
        return False, str(exc) or type(exc).__name__


def json_object(form: dict[str, str], field: str, example: str) -> dict[str, object]:
    """A form field holding a JSON object (empty: ``{}``); raises ValueError saying why not."""
    try:
        value = json.loads(form.get(field) or "{}")
    except ValueError as exc:
        raise ValueError(f"{field}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{field}: a JSON object, like {{}} or {example}")
    return value


@router.post("/devices/{uuid}/ping")
async def ping(request: Request, uuid: str, session: SessionDep, devices: DevicesDep) -> Response:
    await checked_form(request, session)

    async def act() -> str:
        reply = (await devices.ping([uuid], every=False, timeout=ACTION_TIMEOUT))[uuid]
        if not reply.get("ok"):
            raise ValueError(f"no reply: {reply.get('error') or 'timeout'}")
        return f"pong in {float(reply.get('rtt_ms') or 0):.2f} ms"

    return outcome(request, f"/devices/{uuid}", *await attempt(act))


@router.post("/devices/{uuid}/run")
async def run(request: Request, uuid: str, session: SessionDep, devices: DevicesDep) -> Response:
    form = await checked_form(request, session)

    async def act() -> str:
        method = form.get("method", "").strip()
        if not method:
            raise ValueError("method: name the command to run (e.g. status)")
        params = json_object(form, "params", '{"seconds": 5}')
        reply = await devices.run(uuid, method, params, ACTION_TIMEOUT)
        if "task" in reply:
            return f"{method}: started task {reply['task'].get('id', '')}"
        return f"{method}: {json.dumps(reply.get('result'), sort_keys=True)[:2000]}"

    return outcome(request, f"/devices/{uuid}", *await attempt(act))


@router.post("/devices/{uuid}/maintenance")
async def maintenance(
    request: Request, uuid: str, session: SessionDep, devices: DevicesDep
) -> Response:
    form = await checked_form(request, session)
    on = form.get("on") == "1"

    async def act() -> str:
        reply = await devices.run(uuid, DEVICE_MAINTENANCE, {"on": on}, ACTION_TIMEOUT)
        result = reply.get("result") or {}
        return f"maintenance {'on' if on else 'off'} (st_id {result.get('st_id')})"

    return outcome(request, f"/devices/{uuid}", *await attempt(act))


@router.post("/scans")
async def start_scan(request: Request, session: SessionDep, scans: ScansDep) -> Response:
    await checked_form(request, session)
    started: list[int] = []

    async def act() -> str:
        started.append(await scans.start(None, None))
        return f"scan {started[0]} started"

    ok, message = await attempt(act)
    if ok and started:
        page = f"/scans/{started[0]}"
        if wants_fragment(request):
            return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"HX-Redirect": page})
        return RedirectResponse(page, status.HTTP_303_SEE_OTHER)
    return outcome(request, "/scans", ok, message)


@router.post("/keys/{key_id}/{decision}")
async def decide_key(
    request: Request, key_id: str, decision: str, session: SessionDep, keys: KeysDep
) -> Response:
    await checked_form(request, session)
    decide = {"accept": keys.accept, "reject": keys.reject}.get(decision)
    if decide is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "accept or reject")

    async def act() -> str:
        key = await decide(key_id)
        return f"key {key.get('fingerprint', key_id)} {key.get('state', decision)}"

    return outcome(request, "/keys", *await attempt(act))
