"""The MES client (DESIGN §5): look a serial up, deliver a post; every failure is a clear string.

One pooled :class:`aiohttp.ClientSession` serves every call. Lookups retry
with jittered exponential backoff on what a retry can cure — connection
errors, timeouts, 408/429 and 5xx — for up to ``retry_for`` seconds
(``mes_retry_for``, minutes by default), so a MES that is down for a while
costs a delay, not a failed device; while it is down one lookup probes it and
the others wait (:mod:`hwfleet.integrations.mes_gate`). Everything else (404,
HTML, garbage JSON, a body of the wrong shape) becomes a :class:`MesError`
whose message names the URL, the serial and what was wrong; nothing here lets
a bad answer escape as a crash.

Lookups to a plain ``http://`` MES go through :mod:`hwfleet.integrations.mes_http`, a
small keep-alive client on an asyncio protocol with llhttp parsing; ``https``, a proxy
and the posts use aiohttp. Why not httpx (DESIGN §9 names httpx) and why not aiohttp
for every lookup: a scan makes one lookup per device on the event loop that also
consumes replies and writes results, and per lookup httpx spends about 900 µs of CPU,
aiohttp about 150 to 200 µs and the small client a fraction of that (``bench/mes_http.py``
measures them in one run).

Posts are not retried here: :meth:`MesClient.deliver` makes one attempt and
says whether a retry makes sense, because retries of posts belong to the
outbox, whose state survives restarts.
"""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import msgspec
from yarl import URL

from hwfleet.errors import IntegrationError
from hwfleet.http11 import Answer, HttpError, ServerClosedError
from hwfleet.integrations.mes_gate import OutageGate
from hwfleet.integrations.mes_http import LookupPool
from hwfleet.integrations.mes_records import MesFormatError, MesRecord, parse_mes_record
from hwfleet.settings import ServerSettings
from hwfleet.types import JsonObject, Serial

#: Statuses worth another try: the server is busy, slow or briefly broken.
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: What a failed attempt raises: no connection, a reset, a timeout, a broken response.
TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, HttpError)
#: The headers of every request.
HEADERS = {"Accept": "application/json", "User-Agent": "hwfleet-controller"}


class MesError(IntegrationError):
    """A MES lookup failed; ``str(exc)`` is the operator-readable reason.

    ``summary`` says the same without the serial, so that one outage hitting a
    thousand lookups reads as one sentence in the scan's notification.
    """

    def __init__(self, message: str, summary: str | None = None) -> None:
        super().__init__(message)
        self.summary = summary or message


@dataclass(frozen=True, slots=True)
class PostOutcome:
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


def failure(exc: BaseException) -> str:
    """A transport failure in a few words: what an operator needs, not the exception's repr."""
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, aiohttp.ServerDisconnectedError | ServerClosedError):
        return "the server closed the connection"
    if isinstance(exc, HttpError):
        return f"a broken answer ({exc})"
    cause = getattr(exc, "os_error", None) or exc
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, ConnectionResetError):
        return "connection reset"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    detail = (str(exc) or "no detail").splitlines()[0]
    if len(detail) > 100:
        detail = detail[:99] + "…"
    return f"{type(exc).__name__}: {detail}"


class MesClient:
    """Talks to the MES at the four URLs of :meth:`ServerSettings.mes_urls`."""

    def __init__(
        self,
        urls: Mapping[str, str],
        *,
        timeout: float = 10.0,
        connect_timeout: float = 3.0,
        retry_for: float = 300.0,
        backoff: float = 0.1,
        backoff_cap: float = 2.0,
        max_connections: int = 16,
        lookup_client: bool = True,
    ) -> None:
        """``lookup_client=False``: every lookup through aiohttp too, as before hwfleet's
        own HTTP/1.1 client (``bench/mes_http.py`` compares the two)."""
        self.urls = dict(urls)
        self.retry_for = retry_for
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.max_connections = max_connections
        # Per step, as httpx counted them: connecting, then each wait for the answer. Not a
        # total: a scan asks for hundreds of lookups at once, and the time one spends
        # queued for a pooled connection must not count against it.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._connect_timeout, self._read_timeout = connect_timeout, timeout
        #: The lookups' own client (mes_http), or None where aiohttp must serve them;
        #: settled at the first lookup, when the proxy settings are read.
        self._pool: LookupPool | None = None
        self._pool_settled = not lookup_client
        #: While the MES fails, one lookup probes it and the rest wait (see mes_gate).
        self._gate = OutageGate()
        self._proxies: dict[tuple[str, str | None, int | None], str | None] = {}
        # The lookup URL normalised once; each lookup appends an encoded serial to it.
        get = self.urls.get("get", "")
        try:
            self._get_base = str(URL(get))
            self._get_target = URL(get).raw_path_qs or "/"
        except ValueError:  # reported by the first lookup, which names the URL
            self._get_base = self._get_target = get
        try:
            self._origin = str(URL(get).origin())
        except ValueError:
            self._origin = get

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the event loop that creates it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=self._timeout,
                headers=HEADERS,
            )
        return self._session

    def _lookups(self) -> LookupPool | None:
        if not self._pool_settled:
            self._pool_settled = True
            try:
                direct = self._proxy(URL(self._get_base)) is None
            except ValueError:
                direct = False  # aiohttp reports the URL
            if direct:
                self._pool = LookupPool.for_url(
                    self._get_base,
                    limit=self.max_connections,
                    connect_timeout=self._connect_timeout,
                    timeout=self._read_timeout,
                    headers=HEADERS,
                )
        return self._pool

    def _proxy(self, url: URL) -> str | None:
        # aiohttp's trust_env reads ~/.netrc on a thread for every request: the proxy an
        # operator set (HTTP(S)_PROXY, NO_PROXY) is looked up once per MES origin instead.
        origin = (url.scheme, url.host, url.port)
        if origin not in self._proxies:
            proxies = urllib.request.getproxies_environment()
            bypass = not url.host or bool(urllib.request.proxy_bypass(url.host))
            self._proxies[origin] = None if bypass else proxies.get(url.scheme)
        return self._proxies[origin]

    async def _request(
        self, method: str, url: URL, *, data: bytes | None = None, **headers: str
    ) -> Answer:
        http = self._http()
        proxy = self._proxy(url)
        async with http.request(
            method, url, data=data, headers=headers or None, proxy=proxy
        ) as response:
            body = await response.read()
            ctype = response.headers.get("Content-Type", "")
            return Answer(response.status, response.reason or "", ctype, body)

    @classmethod
    def from_settings(cls, settings: ServerSettings, **kwargs: float | int) -> MesClient:
        kwargs.setdefault("retry_for", settings.mes_retry_for)
        return cls(settings.mes_urls(), **kwargs)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        origin = self._origin
        # Encoded here once rather than re-parsed by the client on every try (a measurable
        # share of a 10,000-device scan); a configured URL may carry its own query.
        query = f"serialno={quote(str(sn), safe='')}"
        base = self._get_base
        pool = self._lookups()
        if pool is not None:
            target = self._get_target
            request = pool.request_bytes(f"{target}{'&' if '?' in target else '?'}{query}")
        deadline = time.monotonic() + self.retry_for
        gate, token = self._gate, object()
        attempt = 0
        try:
            while True:
                if not await gate.turn(token, deadline):  # another lookup probed in vain
                    reason, was = gate.last_failure
                    raise MesError(
                        f"{where}: {reason} for {self.retry_for:g} s", f"the MES at {origin} {was}"
                    )
                attempt += 1
                try:
                    if pool is not None:
                        answer = await pool.get(request)
                    else:
                        full = URL(f"{base}{'&' if '?' in base else '?'}{query}", encoded=True)
                        answer = await self._request("GET", full)
                except ValueError as exc:  # aiohttp's InvalidURL: no retry will mend the setting
                    raise MesError(
                        f"{where}: not a usable URL ({exc})", f"the MES URL {url} is not usable"
                    ) from None
                except TRANSPORT_ERRORS as exc:
                    reason = f"unreachable ({failure(exc)})"
                    was = f"was unreachable for {self.retry_for:g} s ({failure(exc)})"
                else:
                    if answer.status not in RETRYABLE_STATUSES:
                        gate.answered(token)
                        return self._interpret(where, f"MES GET {url}", sn, answer)
                    reason = f"answered {answer.status} {answer.reason}".strip()
                    was = f"{reason} for {self.retry_for:g} s"
                gate.failed(token, reason, was)
                if not gate.probing(token):
                    continue  # wait at the gate for the prober's verdict
                delay = jitter(min(self.backoff_cap, self.backoff * 2 ** (attempt - 1)))
                if time.monotonic() + delay > deadline:
                    # The summary names no serial: a whole rack failing one way is one sentence.
                    raise MesError(
                        f"{where}: {reason} after {attempt} attempts", f"the MES at {origin} {was}"
                    )
                await asyncio.sleep(delay)
        finally:
            gate.leave(token)

    @staticmethod
    def _interpret(where: str, general: str, sn: Serial, answer: Answer) -> MesRecord:
        body = answer.body
        ctype = answer.content_type.split(";")[0].strip().lower()
        try:
            document = msgspec.json.decode(body)
        except msgspec.DecodeError:
            document = msgspec.UNSET
        # A "not registered" message may arrive with a 404; it is still an answer.
        if isinstance(document, dict) and isinstance(document.get("info"), str):
            return parse_mes_record(sn, document)
        if answer.status >= 400:
            said = f"answered {answer.status} {answer.reason}"
            raise MesError(f"{where}: {said}: {snippet(body)}", f"{general}: {said}")
        if document is msgspec.UNSET:
            kind = "HTML" if "html" in ctype or body.lstrip()[:1] == b"<" else "invalid JSON"
            said = f"answered {kind} ({ctype or 'no content-type'}) instead of a JSON record"
            raise MesError(f"{where}: {said}: {snippet(body)}", f"{general}: {said}")
        try:
            return parse_mes_record(sn, document)
        except MesFormatError as exc:
            raise MesError(f"{where}: {exc}") from None

    async def deliver(self, url: str, body: JsonObject, *, idempotency_key: str) -> PostOutcome:
        """POST ``body`` once with an ``Idempotency-Key``; never raises for HTTP trouble."""
        try:
            answer = await self._request(
                "POST",
                URL(url),
                data=msgspec.json.encode(body),
                **{"Content-Type": "application/json", "Idempotency-Key": idempotency_key},
            )
        except ValueError as exc:  # aiohttp's InvalidURL: no retry will mend the setting
            return PostOutcome(
                False, None, f"POST {url}: not a usable URL ({exc})", retryable=False
            )
        except TRANSPORT_ERRORS as exc:
            return PostOutcome(False, None, f"POST {url}: {failure(exc)}")
        if 200 <= answer.status < 300:
            return PostOutcome(True, answer.status)
        error = f"POST {url}: {answer.status} {answer.reason}: {snippet(answer.body)}"
        retryable = answer.status in RETRYABLE_STATUSES or answer.status >= 500
        return PostOutcome(False, answer.status, error, retryable=retryable)
