"""The MES client (DESIGN §5): look a serial up, deliver a post; every failure is a clear string.

One pooled :class:`httpx.AsyncClient` serves every call. Lookups retry with
jittered exponential backoff on what a retry can cure — connection errors,
timeouts, 408/429 and 5xx — for up to ``retry_for`` seconds, so a MES that is
down for the first seconds of a scan costs a delay, not a failed device.
Everything else (404, HTML, garbage JSON, a body of the wrong shape) becomes a
:class:`MesError` whose message names the URL, the serial and what was wrong;
nothing here lets a bad answer escape as a crash.

Posts are not retried here: :meth:`MesClient.deliver` makes one attempt and
says whether a retry makes sense, because retries of posts belong to the
outbox, whose state survives restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import msgspec

from hwfleet.controller.scan_compare import MesFormatError, MesRecord, parse_mes_record
from hwfleet.settings import ServerSettings
from hwfleet.types import JsonObject, Serial

#: Connections per pooled client (see :meth:`MesClient.__init__`).
SHARD = 2
#: Statuses worth another try: the server is busy, slow or briefly broken.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class MesError(Exception):
    """A MES lookup failed; ``str(exc)`` is the operator-readable reason."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one post attempt."""

    ok: bool
    status: int | None
    error: str | None = None
    #: False when the MES refused the body itself (4xx other than 408/425/429).
    retryable: bool = True


def jitter(delay: float) -> float:
    """``delay`` scaled into [50 %, 100 %] so that replicas do not retry in lockstep."""
    return delay * (0.5 + random.random() / 2)  # noqa: S311 (spreading retries, not crypto)


def snippet(body: bytes, limit: int = 80) -> str:
    text = body[:limit].decode("utf-8", "replace").replace("\n", " ").strip()
    return repr(text + ("…" if len(body) > limit else ""))


class MesClient:
    """Talks to the MES at the four URLs of :meth:`ServerSettings.mes_urls`."""

    def __init__(
        self,
        urls: Mapping[str, str],
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        retry_for: float = 20.0,
        backoff: float = 0.1,
        backoff_cap: float = 2.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.urls = dict(urls)
        self.retry_for = retry_for
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        # More requests than connections only queue inside httpcore, whose pool rescans its
        # queue on every change: wait here instead (cheap), one connection per request.
        # httpcore's pool rescans every connection for every queued request (quadratic in
        # the pool size), so a single pool of 32 does worse than one of 4. We keep the
        # pooling but shard it: small clients of SHARD connections, each request taking
        # the least busy one, and a semaphore so requests wait here instead of in a pool.
        shards = max(1, -(-max_connections // SHARD))
        self._slots = asyncio.Semaphore(shards * SHARD)
        self._clients = [
            httpx.AsyncClient(
                timeout=httpx.Timeout(timeout, connect=connect_timeout),
                limits=httpx.Limits(max_connections=SHARD, max_keepalive_connections=SHARD),
                headers={"Accept": "application/json", "User-Agent": "hwfleet-controller"},
                transport=transport,
            )
            for _ in range(shards)
        ]
        self._busy = [0] * shards

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        async with self._slots:
            index = min(range(len(self._busy)), key=self._busy.__getitem__)
            self._busy[index] += 1
            try:
                yield self._clients[index]
            finally:
                self._busy[index] -= 1

    @classmethod
    def from_settings(cls, settings: ServerSettings, **kwargs: float | int) -> MesClient:
        return cls(settings.mes_urls(), **kwargs)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()

    async def __aenter__(self) -> MesClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    @property
    def configured(self) -> bool:
        return bool(self.urls.get("get"))

    async def get_device(self, sn: Serial) -> MesRecord:
        """The MES record for ``sn``; raises :class:`MesError` with the reason."""
        url = self.urls.get("get", "")
        if not url:
            raise MesError("no MES lookup URL is configured (--mes or mes_get)")
        where = f"MES GET {url}?serialno={sn}"
        # Built once here rather than by httpx's params merging on every try (a measurable
        # share of a 10,000-device scan); a configured URL may carry its own query.
        target = f"{url}{'&' if '?' in url else '?'}serialno={quote(str(sn), safe='')}"
        deadline = time.monotonic() + self.retry_for
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._client() as http:
                    response = await http.get(target)
            except httpx.HTTPError as exc:
                reason = f"unreachable ({type(exc).__name__}: {exc or 'no detail'})"
            else:
                if response.status_code not in RETRYABLE_STATUSES:
                    return self._interpret(where, sn, response)
                reason = f"answered {response.status_code} {response.reason_phrase}"
            delay = jitter(min(self.backoff_cap, self.backoff * 2 ** (attempt - 1)))
            if time.monotonic() + delay > deadline:
                raise MesError(f"{where}: {reason} after {attempt} attempts")
            await asyncio.sleep(delay)

    @staticmethod
    def _interpret(where: str, sn: Serial, response: httpx.Response) -> MesRecord:
        body = response.content
        ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            document = msgspec.json.decode(body)
        except msgspec.DecodeError:
            document = msgspec.UNSET
        # A "not registered" message may arrive with a 404; it is still an answer.
        if isinstance(document, dict) and isinstance(document.get("info"), str):
            return parse_mes_record(sn, document)
        if response.status_code >= 400:
            status = f"{response.status_code} {response.reason_phrase}"
            raise MesError(f"{where}: answered {status}: {snippet(body)}")
        if document is msgspec.UNSET:
            kind = "HTML" if "html" in ctype or body.lstrip()[:1] == b"<" else "invalid JSON"
            raise MesError(
                f"{where}: answered {kind} ({ctype or 'no content-type'}) instead of a JSON "
                f"record: {snippet(body)}"
            )
        try:
            return parse_mes_record(sn, document)
        except MesFormatError as exc:
            raise MesError(f"{where}: {exc}") from None

    async def deliver(self, url: str, body: JsonObject, *, idempotency_key: str) -> Delivery:
        """POST ``body`` once with an ``Idempotency-Key``; never raises for HTTP trouble."""
        try:
            async with self._client() as http:
                response = await http.post(
                    url,
                    content=msgspec.json.encode(body),
                    headers={
                        "Content-Type": "application/json",
                        "Idempotency-Key": idempotency_key,
                    },
                )
        except httpx.HTTPError as exc:
            return Delivery(False, None, f"POST {url}: {type(exc).__name__}: {exc or 'no detail'}")
        if 200 <= response.status_code < 300:
            return Delivery(True, response.status_code)
        error = (
            f"POST {url}: {response.status_code} {response.reason_phrase}: "
            f"{snippet(response.content)}"
        )
        retryable = response.status_code in RETRYABLE_STATUSES or response.status_code >= 500
        return Delivery(False, response.status_code, error, retryable=retryable)
