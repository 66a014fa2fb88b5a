"""``--transport amqp``: get this device's own bus user, connect as it, run the bus link.

With an identity (the agent can enroll, or already has) the link first
obtains its per-device credentials from the controller's TLS gateway
(:mod:`hwfleet.agent.links.bus_credentials`), then opens its own connection to
RabbitMQ as ``hwfleet-device-<uuid>`` — a device bus that declares nothing
but its own queues — and runs a :class:`~hwfleet.agent.links.bus.BusLink`
that sends through the ``uplink`` exchange. Without an identity, or when the
controller does not provision users, it connects with the ``--bus`` URL's
credentials as before.

A login the broker refuses (the user was deleted when the key was revoked,
or the password changed) makes the link ask for credentials again; so does
a link that stays disconnected for ``relogin_after`` seconds, since RabbitMQ
drops a deleted user's connections and the robust reconnect cannot log in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

from hwfleet.agent.links import bus_credentials
from hwfleet.agent.links.backoff import Backoff
from hwfleet.agent.links.bus import BusLink
from hwfleet.agent.runtime import AgentRuntime
from hwfleet.errors import TrustError

if TYPE_CHECKING:
    from hwfleet.bus.amqp import AmqpBus
    from hwfleet.trust import AgentIdentity

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Stopped(Exception):
    pass


class AmqpAgentLink:
    """A :class:`~hwfleet.agent.links.Link` over RabbitMQ with this device's own credentials."""

    def __init__(
        self,
        runtime: AgentRuntime,
        bus_url: str,
        *,
        identity: AgentIdentity | None = None,
        controller: tuple[str, int] | None = None,
        password: str = "",
        token: str = "",
        controller_fingerprint: str = "",
        local_address: str | None = None,
        heartbeat: float = 15.0,
        reconnect_min: float = 0.5,
        reconnect_max: float = 30.0,
        relogin_after: float = 60.0,
    ) -> None:
        if identity is not None and controller is None:
            raise ValueError("per-device bus credentials come from the controller: give its H:P")
        self.runtime = runtime
        self.identity = identity
        self.connected = asyncio.Event()
        #: The bus of the current attempt, and whether it logs in as this device's own user.
        self.bus: AmqpBus | None = None
        self.per_device = False
        self._url = bus_url
        self._controller = controller
        self._secrets = (password, token)
        self._fingerprint = controller_fingerprint or None
        self._local = local_address
        # The controller sees only the broker: the device says where it is itself.
        runtime.ipaddr = runtime.ipaddr or local_address or _address_towards(bus_url)
        self._heartbeat = heartbeat
        self._reconnect = (reconnect_min, reconnect_max)
        self._relogin_after = relogin_after
        self._backoff = Backoff(reconnect_min, reconnect_max)
        self._stopping = asyncio.Event()
        self._link: BusLink | None = None

    def stop(self) -> None:
        self._stopping.set()
        if self._link is not None:
            self._link.stop()

    async def run(self) -> None:
        refresh = False
        while not self._stopping.is_set():
            try:
                credentials = await self._until_stopped(self._credentials(refresh))
                refresh = False
                await self._until_stopped(self._session(credentials))
            except _Stopped:
                return
            except _LoginRefusedError:
                if self.identity is None:
                    raise
                log.warning("the broker refused this device's bus user: asking for a new one")
                refresh = True
            except Exception as exc:
                if self.identity is None and _is_login_refusal(exc):
                    raise  # the --bus URL's credentials are wrong: nothing to retry
                log.warning("bus link failed (%s); retrying", exc)
            try:
                await self._until_stopped(asyncio.sleep(self._backoff.next()))
            except _Stopped:
                return

    async def _credentials(self, refresh: bool) -> bus_credentials.BusCredentials | None:
        if self.identity is None:
            return None
        if not refresh:
            stored = bus_credentials.load(self.identity)
            if stored is not None:
                return stored
        assert self._controller is not None
        host, port = self._controller
        password, token = self._secrets
        credentials = await bus_credentials.obtain(
            self.identity,
            host,
            port,
            password=password,
            token=token,
            expected_fingerprint=self._fingerprint,
            local_address=self._local,
        )
        self._secrets = (password, "")  # a token is single use: never sent twice
        return credentials

    async def _session(self, credentials: bus_credentials.BusCredentials | None) -> None:
        """One connection: run the bus link until it stops or stays disconnected too long."""
        from hwfleet.bus.amqp import AmqpBus

        url = self._url
        if credentials is not None:
            url = bus_credentials.with_credentials(url, credentials)
        bus = AmqpBus(url, declare=credentials is None)
        try:
            await bus.start()
        except Exception as exc:
            if credentials is not None and _is_login_refusal(exc):
                raise _LoginRefusedError from exc
            raise
        self.bus, self.per_device = bus, credentials is not None
        link = BusLink(
            self.runtime,
            bus,
            heartbeat=self._heartbeat,
            reconnect_min=self._reconnect[0],
            reconnect_max=self._reconnect[1],
            per_device=self.per_device,
        )
        link.connected = self.connected
        self._link = link
        running = asyncio.create_task(link.run())
        watching = asyncio.create_task(self._watch())
        try:
            done, _ = await asyncio.wait({running, watching}, return_when=asyncio.FIRST_COMPLETED)
            if running in done:
                running.result()  # raises what the link raised
                return
            log.warning(
                "not on the bus for %g s: connecting again with fresh credentials",
                self._relogin_after,
            )
            raise _LoginRefusedError
        finally:
            link.stop()
            self.connected.clear()
            for task in (running, watching):
                task.cancel()
            # Bounded: with the broker gone, unsubscribing could wait for it forever.
            await asyncio.wait({running, watching}, timeout=10)
            self._link = None
            await bus.close()
            self.bus = None

    async def _watch(self) -> None:
        """Returns once the link has been disconnected for ``relogin_after`` seconds."""
        loop = asyncio.get_running_loop()
        since = loop.time()
        while True:
            await asyncio.sleep(min(1.0, self._relogin_after / 4))
            if self.connected.is_set():
                since = loop.time()
            elif loop.time() - since >= self._relogin_after:
                return

    async def _until_stopped(self, aw: Awaitable[T]) -> T:
        task = asyncio.ensure_future(aw)
        stopper = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # cancelled: take the attempt down with us
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        finally:
            stopper.cancel()
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise _Stopped


class _LoginRefusedError(TrustError):
    """The broker refused this device's own user: get new credentials."""


def _is_login_refusal(exc: BaseException) -> bool:
    import aiormq.exceptions

    cause = exc.__cause__
    return isinstance(
        cause,
        (aiormq.exceptions.AuthenticationError, aiormq.exceptions.ProbableAuthenticationError),
    )


def _address_towards(bus_url: str) -> str:
    """The address this machine uses to reach the broker (no packet is sent)."""
    from urllib.parse import urlsplit

    from hwfleet.agent.discovery import local_ip_towards

    return local_ip_towards(urlsplit(bus_url).hostname or "127.0.0.1")
