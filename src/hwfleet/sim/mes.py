"""A MES simulator: the four seed-000 endpoints on a real HTTP server, plus test hooks.

Records come from a DESIGN §8 simulation profile — each device's serial is
registered with the MACs of its ``interfaces`` — optionally overridden by a
top-level ``"mes"`` section::

    {"devices": [...],
     "mes": {"records": {"1001": [{"serialNo": "1001", "macInfo": [...]}, ...]},
             "unregistered": [1002]}}

``records`` gives the exact ``info`` rows answered for a serial (several rows
are allowed: the client must union them); ``unregistered`` serials answer
``{"info": "Device is not registered"}``, as does any serial not in the profile.

Test hooks: ``GET /_received`` returns every accepted post with its
``Idempotency-Key``, the per-key counts and the duplicates, ``lookups`` (lookups
answered) and ``lookups_received`` (lookups that arrived, including those still
waiting out an injected latency or answered with a fault); ``POST /_faults``
sets ``fail_rate`` (fraction of requests answered 500), ``latency`` (seconds
added to each request, measured against the current setting: lowering it
releases the requests already waiting, so a test can hold lookups in flight
and let them go when it chooses), ``garbage`` (``"html"``, ``"json"`` or ``"404"`` for
lookups), ``down_for`` (answer 503 for that many seconds); ``POST /_reset``
forgets what was received. A post repeating an ``Idempotency-Key`` is answered
200 like the first but recorded as a duplicate, never applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hwfleet.errors import ConfigError
from hwfleet.types import JsonObject

LOOKUP_PATH = "/deviceInfo/getById"
POST_PATHS = ("/log/deviceScan", "/operations/pair", "/notifications/devicescan")
NOT_REGISTERED = "Device is not registered"
GARBAGE_KINDS = ("html", "json", "404")


class MesProfileError(ConfigError, ValueError):
    """The profile file is missing or malformed; the message says where."""


def records_from_profile(profile: Mapping[str, Any]) -> dict[str, Any]:
    """``{serial text: info}`` where info is a list of rows or the not-registered message."""
    devices = profile.get("devices", [])
    if not isinstance(devices, list):
        raise MesProfileError("profile: 'devices' must be a list")
    records: dict[str, Any] = {}
    for index, device in enumerate(devices):
        if not isinstance(device, Mapping) or "sn" not in device:
            raise MesProfileError(f"profile: devices[{index}] must be an object with an 'sn'")
        interfaces = device.get("interfaces", [])
        if not isinstance(interfaces, list):
            raise MesProfileError(f"profile: devices[{index}].interfaces must be a list")
        macs = [
            {"interface": str(nic.get("name", "")), "macaddr": str(nic.get("mac", ""))}
            for nic in interfaces
            if isinstance(nic, Mapping)
        ]
        records[str(device["sn"])] = [{"serialNo": str(device["sn"]), "macInfo": macs}]
    mes = profile.get("mes", {})
    if not isinstance(mes, Mapping):
        raise MesProfileError("profile: 'mes' must be an object")
    overrides = mes.get("records", {})
    if not isinstance(overrides, Mapping):
        raise MesProfileError("profile: mes.records must map serials to info rows")
    for sn, info in overrides.items():
        if not isinstance(info, list | str):
            raise MesProfileError(
                f"profile: mes.records[{sn!r}] must be a list of rows or a message"
            )
        records[str(sn)] = info
    for sn in mes.get("unregistered", []):
        records[str(sn)] = NOT_REGISTERED
    return records


def load_profile(path: str | Path) -> dict[str, Any]:
    """The profile as ``hwfleet sim`` validates it (one set of rules: a MAC ``sim`` refuses,
    ``mes-sim`` refuses too), as plain JSON values; raises :class:`MesProfileError`."""
    from hwfleet.sim import profiles

    try:
        document: dict[str, Any] = msgspec.to_builtins(profiles.load_profile(path))
    except profiles.ProfileError as exc:
        raise MesProfileError(str(exc)) from None
    return document


@dataclass(slots=True)
class Faults:
    fail_rate: float = 0.0
    latency: float = 0.0
    garbage: str | None = None
    down_until: float = 0.0

    def active(self) -> bool:
        return bool(self.fail_rate or self.latency or self.garbage or time.time() < self.down_until)


@dataclass(slots=True)
class MesSimulator:
    """The simulator's state; :attr:`app` is the ASGI application serving it."""

    records: dict[str, Any]
    faults: Faults = field(default_factory=Faults)
    posts: list[JsonObject] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    lookups: int = 0
    lookups_received: int = 0
    #: Set (and replaced) whenever the faults change, waking requests waiting out a latency.
    _faults_changed: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def from_profile(cls, profile: Mapping[str, Any], *, fail_rate: float = 0.0) -> MesSimulator:
        return cls(records_from_profile(profile), Faults(fail_rate=fail_rate))

    @property
    def app(self) -> ASGIApp:
        routes = [
            Route(LOOKUP_PATH, self._get, methods=["GET"]),
            *(Route(path, self._post, methods=["POST"]) for path in POST_PATHS),
            Route("/_received", self._received, methods=["GET"]),
            Route("/_faults", self._set_faults, methods=["POST"]),
            Route("/_reset", self._reset, methods=["POST"]),
        ]
        return _PlainLookups(self, Starlette(routes=routes))

    def answer_lookup(self, serial: str) -> bytes:
        """The JSON answer to a lookup of ``serial`` (a lookup answered: counted here)."""
        self.lookups += 1
        return msgspec.json.encode({"info": self.records.get(serial.strip(), NOT_REGISTERED)})

    async def _delay(self) -> None:
        """Wait until ``latency`` (as it is set now, not as it was) has passed since arrival."""
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        while (left := arrived + self.faults.latency - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._faults_changed.wait(), left)

    def _set(self, faults: Faults) -> None:
        self.faults = faults
        changed, self._faults_changed = self._faults_changed, asyncio.Event()
        changed.set()

    async def _injected(self) -> Response | None:
        if self.faults.latency:
            await self._delay()
        if time.time() < self.faults.down_until:
            return JSONResponse({"error": "MES is down for maintenance"}, status_code=503)
        if self.faults.fail_rate and random.random() < self.faults.fail_rate:  # noqa: S311
            return JSONResponse({"error": "injected failure"}, status_code=500)
        return None

    async def _get(self, request: Request) -> Response:
        self.lookups_received += 1
        if (fault := await self._injected()) is not None:
            return fault
        garbage = self.faults.garbage
        if garbage is not None:
            self.lookups += 1
        if garbage == "html":
            return Response("<html><body><h1>Login</h1></body></html>", media_type="text/html")
        if garbage == "json":
            return Response('{"info": [{"serialNo": ', media_type="application/json")
        if garbage == "404":
            return Response("Not Found", status_code=404, media_type="text/plain")
        serial = request.query_params.get("serialno")
        if serial is None:
            self.lookups += 1
            return JSONResponse({"error": "serialno query parameter is required"}, 400)
        return Response(self.answer_lookup(serial), media_type="application/json")

    async def _post(self, request: Request) -> Response:
        if (fault := await self._injected()) is not None:
            return fault
        raw = await request.body()
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError as exc:
            return JSONResponse({"error": f"body is not JSON: {exc}"}, status_code=400)
        key = request.headers.get("idempotency-key", "")
        duplicate = bool(key) and self.counts[key] > 0
        if key:
            self.counts[key] += 1
        self.posts.append(
            {"path": request.url.path, "key": key, "body": body, "duplicate": duplicate}
        )
        return JSONResponse({"status": "duplicate" if duplicate else "accepted"})

    async def _received(self, request: Request) -> Response:
        accepted = [p for p in self.posts if not p["duplicate"]]
        return JSONResponse(
            {
                "posts": accepted,
                "duplicates": [p for p in self.posts if p["duplicate"]],
                "counts": dict(self.counts),
                "lookups": self.lookups,
                "lookups_received": self.lookups_received,
            }
        )

    async def _set_faults(self, request: Request) -> Response:
        try:
            spec = msgspec.json.decode(await request.body())
            if not isinstance(spec, dict):
                raise ValueError("expected a JSON object")
            fail_rate = float(spec.get("fail_rate", self.faults.fail_rate))
            latency = float(spec.get("latency", self.faults.latency))
            garbage = spec.get("garbage", self.faults.garbage)
            down_for = float(spec.get("down_for", 0.0))
            if not 0 <= fail_rate <= 1 or latency < 0 or down_for < 0:
                raise ValueError("fail_rate must be 0..1, latency and down_for >= 0")
            if garbage is not None and garbage not in GARBAGE_KINDS:
                raise ValueError(f"garbage must be one of {', '.join(GARBAGE_KINDS)} or null")
        except (ValueError, TypeError, msgspec.DecodeError) as exc:
            return JSONResponse({"error": f"bad faults: {exc}"}, status_code=400)
        self._set(Faults(fail_rate, latency, garbage, time.time() + down_for))
        return JSONResponse({"ok": True})

    async def _reset(self, request: Request) -> Response:
        self.posts.clear()
        self.counts.clear()
        self.lookups = self.lookups_received = 0
        self._set(Faults())
        return JSONResponse({"ok": True})


class _PlainLookups:
    """ASGI: answers a lookup itself while no fault is injected; the rest goes to Starlette.

    Benchmarks run mes-sim on the machine whose CPU they measure, one lookup per
    device; Starlette's request, routing and response objects were half of a lookup's
    cost. The answer is the same either way (:meth:`MesSimulator.answer_lookup`).
    """

    def __init__(self, sim: MesSimulator, app: ASGIApp) -> None:
        self.sim = sim
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sim = self.sim
        if (
            scope["type"] == "http"
            and scope["path"] == LOOKUP_PATH
            and scope["method"] == "GET"
            and not sim.faults.active()
        ):
            serial = parse_qs(scope["query_string"].decode("latin-1")).get("serialno")
            if serial:
                sim.lookups_received += 1
                body = sim.answer_lookup(serial[0])
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one), ready to hand to uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def serve(sim: MesSimulator, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run ``sim`` on uvicorn inside this event loop; yields its base URL."""
    import uvicorn

    sock = bind_socket(host, port)
    config = uvicorn.Config(sim.app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task  # re-raise why it could not start
                raise RuntimeError("mes-sim stopped before it started")
            await asyncio.sleep(0.005)
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        yield f"http://{shown}:{bound[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
