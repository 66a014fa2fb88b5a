"""The device's admin listener: seed 004's direct access, by key or once by the device password.

Off unless ``--admin-listen H:P`` is given. A client (a second controller, an
operator's tool) connects over TLS (the device's own key, self-signed:
:meth:`~hwfleet.trust.AgentIdentity.listener_certificate`) and speaks the agent
protocol. Until it logs in (:mod:`hwfleet.trust.deviceauth`) the session answers
only ``device.auth.hello`` and ``device.auth.login``; every other method is
refused with ``unauthorized`` and runs nothing. After login the peer may call
every agent method, as the enrolled controller may, with its key as the caller
(:data:`hwfleet.agent.peers.CALLER`).

Defences: the password is checked only for a key the client has just proved
(so a password admits a key, never an anonymous session), against the scrypt
hash, in constant time; failed logins are charged to the source address and to
the listener as a whole (:class:`~hwfleet.trust.RateLimiter`), and a limited
source is refused before anything is compared. A session that has not logged in
within ``login_timeout`` is closed, at most ``max_connections`` are served at
once, and each command re-checks that the key is still trusted. Removing a key
(``device.trust.remove``, or ``reset_acl``) closes its sessions at once. The
password is never logged; refusals name the rule, never the value.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import msgspec

from hwfleet.agent.access.adminpass import AdminPassword
from hwfleet.agent.access.trustlist import TrustList, TrustListError, check_label
from hwfleet.agent.localstate import LocalStateError
from hwfleet.agent.peers import CALLER
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.protocol import envelope
from hwfleet.protocol.errors import ErrorCode, MethodError
from hwfleet.protocol.framing import STREAM_LIMIT
from hwfleet.protocol.methods import MethodRegistry, canonical
from hwfleet.protocol.session import Session
from hwfleet.protocol.stream import StreamChannel, pump
from hwfleet.trust import AgentIdentity, RateLimiter, fingerprints
from hwfleet.trust.deviceauth import (
    AUTH_HELLO,
    AUTH_LOGIN,
    NONCE_BYTES,
    AuthError,
    challenge,
    load_public_key,
    verify,
)

log = logging.getLogger(__name__)

#: The bucket every failure is also charged to, so many source addresses do not add up.
_EVERYONE = "listener"


class LoginParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    public_key: str
    signature: str
    password: str = ""
    label: str = ""

    def __repr__(self) -> str:  # never the password, whatever logs a params object
        return f"LoginParams(public_key=…, password={'***' if self.password else ''!r})"


class AdminListener:
    """Serves authenticated peers for one :class:`AgentRuntime` until :meth:`close`."""

    def __init__(
        self,
        runtime: AgentRuntime,
        identity: AgentIdentity,
        *,
        host: str,
        port: int,
        login_timeout: float = 10.0,
        max_connections: int = 32,
        limiter: RateLimiter | None = None,
        everyone_limiter: RateLimiter | None = None,
    ) -> None:
        from hwfleet.trust.tls import listener_context

        self.runtime = runtime
        self.host = host
        self.port = port
        cert = identity.listener_certificate()
        self._context = listener_context(str(cert), str(identity.key_path))
        #: What a client signs: the certificate it saw must be this one.
        self.cert_fingerprint = fingerprints.of_cert_pem(cert.read_text(encoding="ascii"))
        #: The device key: what clients pin (``hwfleet keys list`` shows it).
        self.device_fingerprint = identity.fingerprint
        self.login_timeout = login_timeout
        self.max_connections = max_connections
        self.limiter = limiter if limiter is not None else RateLimiter(rate=5 / 60, burst=10)
        self.everyone = (
            everyone_limiter if everyone_limiter is not None else RateLimiter(rate=0.5, burst=60)
        )
        self.password_lock = asyncio.Lock()
        self._server: asyncio.Server | None = None
        self._tasks: dict[asyncio.Task[None], _Gate] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve,
            self.host,
            self.port,
            ssl=self._context,
            limit=STREAM_LIMIT,
            ssl_handshake_timeout=self.login_timeout,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("admin listener on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        # Closing each connection lets its task finish on its own: asyncio logs an error
        # for a cancelled client_connected_cb task, and a clean EOF is what peers expect.
        for gate in list(self._tasks.values()):
            gate.close_session()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def limited(self, source: str) -> float:
        """Seconds ``source`` must wait before its next login (0: it may try now)."""
        return max(self.limiter.retry_after(source), self.everyone.retry_after(_EVERYONE))

    def charge(self, source: str) -> None:
        self.limiter.failure(source)
        self.everyone.failure(_EVERYONE)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        channel = StreamChannel(writer)
        if len(self._tasks) >= self.max_connections:
            log.warning(
                "admin listener: refusing %s, %d sessions open",
                channel.peername(),
                len(self._tasks),
            )
            await channel.close()
            return
        source = str((writer.get_extra_info("peername") or ("?",))[0])
        gate = self._tasks[task] = _Gate(self, source, writer)
        session: Session[AgentRuntime] = Session(
            channel.send, gate, self.runtime, peer=f"admin peer {channel.peername()}"
        )
        gate.session = session
        timer = asyncio.get_running_loop().call_later(self.login_timeout, gate.expire)
        try:
            await pump(reader, session)
        finally:
            timer.cancel()
            gate.forget()
            self._tasks.pop(task, None)
            with contextlib.suppress(Exception):
                await channel.close()


class _Gate(MethodRegistry[AgentRuntime]):
    """One connection's registry: login methods until a key is proven, then the agent's."""

    def __init__(self, listener: AdminListener, source: str, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self._listener = listener
        self._source = source
        self._writer = writer
        self._nonce: bytes | None = None
        self.session: Session[AgentRuntime] | None = None
        self.access_id: str | None = None
        self.forget: Callable[[], None] = lambda: None
        self.add(AUTH_HELLO, self._hello)
        self.add(AUTH_LOGIN, self._login, LoginParams)

    def close_session(self) -> None:
        """End the connection now: pending calls fail, the reader wakes with EOF."""
        if self.session is not None:
            self.session.close()
        self._writer.close()

    def expire(self) -> None:
        if self.access_id is None:
            log.info("admin listener: %s did not log in in time; closing", self._source)
            self.close_session()

    async def dispatch(
        self, ctx: AgentRuntime, cmd: envelope.Command
    ) -> envelope.Result | envelope.Error:
        if self.access_id is None:
            if canonical(cmd.method) in (AUTH_HELLO, AUTH_LOGIN):
                return await super().dispatch(ctx, cmd)
            return envelope.error(
                cmd.id,
                f"{cmd.method}: log in first ({AUTH_HELLO}, then {AUTH_LOGIN})",
                ErrorCode.UNAUTHORIZED,
            )
        try:
            trusted = TrustList(ctx.local).is_trusted(self.access_id)
        except LocalStateError as exc:  # a damaged list trusts nobody until it is fixed
            return envelope.error(cmd.id, f"refused: {exc}", ErrorCode.REFUSED)
        if not trusted:
            # The list changed behind this session's back (a hand edit): it ends here.
            self.close_session()
            return envelope.error(cmd.id, "this key is no longer trusted", ErrorCode.UNAUTHORIZED)
        return await ctx.registry.dispatch(ctx, cmd)

    async def _hello(self, rt: AgentRuntime, params: dict[str, Any]) -> dict[str, Any]:
        self._nonce = secrets.token_bytes(NONCE_BYTES)
        return {
            "uuid": rt.info.uuid,
            "fingerprint": self._listener.device_fingerprint,
            "nonce": base64.b64encode(self._nonce).decode("ascii"),
        }

    async def _login(self, rt: AgentRuntime, params: LoginParams) -> dict[str, Any]:
        nonce, self._nonce = self._nonce, None  # one signature per nonce, whatever happens
        if nonce is None:
            raise MethodError(
                f"call {AUTH_HELLO} first: it gives the nonce to sign", ErrorCode.UNAUTHORIZED
            )
        wait = self._listener.limited(self._source)
        if wait > 0:
            raise MethodError(
                f"too many failed logins; try again in {wait:.0f} s", ErrorCode.REFUSED
            )
        try:
            key, access_id = load_public_key(params.public_key)
            verify(
                key, params.signature, challenge(nonce, self._listener.cert_fingerprint, access_id)
            )
            label = check_label(params.label)
        except (AuthError, TrustListError) as exc:
            self._listener.charge(self._source)
            raise MethodError(str(exc), ErrorCode.UNAUTHORIZED) from None
        try:
            admitted_by = await self._admit(rt, access_id, params.password, label)
        except TrustListError as exc:  # the list is full
            raise MethodError(str(exc), ErrorCode.REFUSED) from None
        except (OSError, LocalStateError) as exc:
            raise MethodError(f"the device's trust store: {exc}") from None
        self.access_id = access_id
        CALLER.set(access_id)  # this connection's task: every later command runs as this key
        self.forget = rt.peers.add(access_id, self.close_session)
        log.info("admin listener: %s logged in by %s as %s", self._source, admitted_by, access_id)
        await rt.log(
            "notice", "peer logged in", access_id=access_id, by=admitted_by, source=self._source
        )
        return {"uuid": rt.info.uuid, "access_id": access_id, "admitted_by": admitted_by}

    async def _admit(self, rt: AgentRuntime, access_id: str, password: str, label: str) -> str:
        """How ``access_id`` (a proven key) gets in: ``"key"`` or ``"password"``; else refuse."""
        trust = TrustList(rt.local)
        if trust.is_trusted(access_id):
            return "key"
        if not password:
            raise MethodError(
                f"key {access_id} is not on this device's trust list: log in once with the "
                "device password to add it",
                ErrorCode.UNAUTHORIZED,
            )
        # One password check at a time: parallel connections cannot outrun the failure budget.
        async with self._listener.password_lock:
            wait = self._listener.limited(self._source)
            if wait > 0:
                raise MethodError(
                    f"too many failed logins; try again in {wait:.0f} s", ErrorCode.REFUSED
                )
            if not await AdminPassword(rt.local).check(password):
                self._listener.charge(self._source)
                raise MethodError(
                    "the device password is wrong (or none is set)", ErrorCode.UNAUTHORIZED
                )
        async with rt.local.lock:
            trust.add(access_id, label or f"admitted by password from {self._source}")
        return "password"
