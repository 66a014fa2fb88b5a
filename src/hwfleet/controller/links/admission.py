"""Who may talk to the controller: TLS on the agent port, enrollment, and key checks.

A connection without a client certificate may only ask ``enroll.hello`` and
``enroll``; a ``handshake`` needs a certificate from the controller's CA whose
key is in state accepted, naming the uuid the handshake claims. ``--insecure``
turns all of this off (plain TCP) and says so loudly.

With ``--bus-credentials`` an AMQP device gets its own RabbitMQ user: in the
``enroll`` reply when it asks (``transport: "amqp"``), or later over mTLS
with ``bus.credentials``; revoking its key deletes that user.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import weakref
from typing import TYPE_CHECKING, Any

import msgspec

from hwfleet.controller.devices import DeviceRegistry
from hwfleet.controller.events import EventPublisher
from hwfleet.controller.links.agent_methods import AgentContext, AgentMethods
from hwfleet.integrations.rabbitmq_users import (
    BusCredentialsError,
    Credentials,
    Provisioner,
    build_provisioner,
)
from hwfleet.protocol import methods
from hwfleet.protocol.errors import ErrorCode, MethodError
from hwfleet.settings import ServerSettings
from hwfleet.trust import (
    BUS_CREDENTIALS,
    ENROLL,
    ENROLL_HELLO,
    CertificateAuthority,
    EnrollmentService,
    EnrollParams,
    PeerIdentity,
    canonical_uuid,
    peer_identity,
    server_context,
)
from hwfleet.trust.enroll_batch import EnrollQueue
from hwfleet.trust.enroll_limits import PasswordCaps

if TYPE_CHECKING:
    from hwfleet.store import EventRecord, Store

log = logging.getLogger(__name__)


def certificate_hosts(listen_host: str) -> list[str]:
    """Names for the gateway certificate (agents pin the CA, so these are informational)."""
    hosts = ["127.0.0.1", "localhost", socket.gethostname()]
    if listen_host not in ("", "0.0.0.0", "::"):
        hosts.insert(0, listen_host)
    return list(dict.fromkeys(hosts))


class Admission:
    """Builds the TLS context and enforces who may do what on the agent port."""

    def __init__(
        self,
        settings: ServerSettings,
        store: Store,
        events: EventPublisher,
        devices: DeviceRegistry,
        listen_host: str,
    ) -> None:
        self.settings = settings
        self._devices = devices
        self.ca = CertificateAuthority.load_or_create(settings.data_dir)
        self.keys = EnrollmentService(
            store,
            self.ca,
            password=settings.enroll_password,
            events=self._event_sink(events),
            on_revoke=self._revoked,
            manual_approval=settings.manual_approval,
            password_caps=PasswordCaps(
                per_source=settings.enroll_password_per_source,
                window=settings.enroll_password_window,
                fleet_limit=settings.enroll_password_fleet_limit,
            ),
        )
        #: Storms of ``enroll`` are decided in batches and answered ``busy`` past a bound.
        self.enroll_queue = EnrollQueue(self.keys)
        self.ssl_context: ssl.SSLContext | None = None
        #: Creates and deletes per-device RabbitMQ users (None: devices share the bus URL's).
        self.bus_credentials: Provisioner | None = build_provisioner(
            settings.bus_credentials, settings.bus
        )
        if self.bus_credentials is not None and settings.insecure:
            raise ValueError("--bus-credentials needs enrollment, which --insecure turns off")
        #: Open links by the key fingerprint of their client certificate, so revoking a key
        #: closes every link holding it, also one whose handshake is still being checked.
        #: Only certificates this CA issued get here: at most one entry per enrolled key.
        self._links: dict[str, weakref.WeakSet[asyncio.StreamWriter]] = {}
        if settings.insecure:
            log.warning(
                "INSECURE: the agent port speaks plain TCP and accepts any device without "
                "authentication (--insecure). Never use this on a network you do not control."
            )
        else:
            paths = self.ca.issue_server_cert(certificate_hosts(listen_host))
            self.ssl_context = server_context(self.ca, paths)
            # No agent resumes a TLS session (each link is a fresh handshake), so the two
            # session tickets TLS 1.3 issues by default are work for nothing: about a third
            # of the controller's cost of an mTLS handshake (issue 18, an enrollment storm).
            self.ssl_context.num_tickets = 0
            log.info("controller CA fingerprint %s", self.ca.fingerprint())

    async def close(self) -> None:
        await self.enroll_queue.close()
        await self.keys.session_checks.close()

    def install(self, agent_methods: AgentMethods) -> None:
        agent_methods.add(ENROLL_HELLO, self._hello)
        agent_methods.add(ENROLL, self._enroll, EnrollParams)
        agent_methods.add(BUS_CREDENTIALS, self._bus_credentials)

    def on_connect(self, ctx: AgentContext, writer: asyncio.StreamWriter) -> None:
        """Read the verified client certificate, if the peer presented one."""
        ssl_object = writer.get_extra_info("ssl_object")
        identity = peer_identity(ssl_object) if ssl_object is not None else None
        if identity is not None:
            ctx.cert_uuid = identity.device_uuid
            ctx.extra["identity"] = identity
            self._links.setdefault(identity.fingerprint, weakref.WeakSet()).add(writer)

    async def check_handshake(self, ctx: AgentContext, hs: methods.Handshake) -> None:
        if self.settings.insecure or ctx.transport != "stream":
            return
        identity: PeerIdentity | None = ctx.extra.get("identity")
        if identity is None:
            raise MethodError(
                "enroll first: connect with the certificate the controller issued",
                ErrorCode.UNAUTHORIZED,
            )
        if not await self.keys.check_session(identity):
            raise MethodError("this device's key is not accepted", ErrorCode.REFUSED)

    async def _hello(self, ctx: AgentContext, params: dict[str, Any]) -> dict[str, Any]:
        self._anonymous_only(ctx)
        ctx.extra["enrolling"] = True
        return self.keys.hello()

    async def _enroll(self, ctx: AgentContext, params: EnrollParams) -> dict[str, Any]:
        self._anonymous_only(ctx)
        ctx.extra["enrolling"] = True
        reply = await self.enroll_queue.enroll(params, source_ip=ctx.ipaddr)
        if (
            params.transport == "amqp"
            and reply.state == "accepted"
            and self.bus_credentials is not None
        ):
            credentials = await self._provision(canonical_uuid(params.uuid))
            reply = msgspec.structs.replace(
                reply, bus_username=credentials.username, bus_password=credentials.password
            )
        return reply.to_dict()

    async def _bus_credentials(self, ctx: AgentContext, params: dict[str, Any]) -> dict[str, Any]:
        """An enrolled device (mTLS, key accepted) gets its own bus user, with a new password."""
        identity: PeerIdentity | None = ctx.extra.get("identity")
        if self.settings.insecure or ctx.transport != "stream" or identity is None:
            raise MethodError(
                "bus credentials need the certificate the controller issued (mTLS)",
                ErrorCode.UNAUTHORIZED,
            )
        if not await self.keys.check_session(identity):
            raise MethodError("this device's key is not accepted", ErrorCode.REFUSED)
        if self.bus_credentials is None:
            raise MethodError(
                "per-device bus credentials are off on this controller: use the bus URL's",
                ErrorCode.NOT_FOUND,
            )
        credentials = await self._provision(identity.device_uuid)
        return {"bus_username": credentials.username, "bus_password": credentials.password}

    async def _provision(self, device_uuid: str) -> Credentials:
        assert self.bus_credentials is not None
        try:
            credentials = await self.bus_credentials.provision(device_uuid)
        except BusCredentialsError as exc:
            log.error("could not provision the bus user of %s: %s", device_uuid, exc)
            raise MethodError(
                "the controller could not create this device's bus user; try again later",
                ErrorCode.FAILED,
            ) from None
        # A revocation that ran while the user was being created must still win.
        async with self.keys.store.tx(readonly=True) as tx:
            keys = await tx.keys.for_device(device_uuid)
        if not any(key.state == "accepted" for key in keys):
            await self._revoke_bus_user(device_uuid)
            raise MethodError("this device's key is not accepted", ErrorCode.REFUSED)
        return credentials

    def _anonymous_only(self, ctx: AgentContext) -> None:
        if self.settings.insecure:
            raise MethodError(
                "enrollment is off: the controller runs --insecure", ErrorCode.REFUSED
            )
        if ctx.uuid is not None or ctx.cert_uuid is not None or ctx.transport != "stream":
            raise MethodError("already enrolled", ErrorCode.BAD_REQUEST)

    async def _revoked(self, device_uuid: str, fingerprint: str) -> None:
        dropped = self._devices.drop(device_uuid, "key revoked")
        # A link whose handshake passed the key check just before the revocation is not
        # attached yet, so the registry cannot drop it: close it by its key instead.
        for writer in list(self._links.pop(fingerprint, ())):
            writer.close()
            dropped = True
        if dropped:
            log.warning("dropped %s: its key %s was revoked", device_uuid, fingerprint)
        await self._revoke_bus_user(device_uuid)

    async def _revoke_bus_user(self, device_uuid: str) -> None:
        if self.bus_credentials is None:
            return
        try:
            await self.bus_credentials.revoke(device_uuid)
        except BusCredentialsError as exc:
            log.error(
                "could not delete the bus user of revoked device %s (delete it by hand: "
                "rabbitmqctl delete_user hwfleet-device-%s): %s",
                device_uuid,
                device_uuid,
                exc,
            )

    @staticmethod
    def _event_sink(events: EventPublisher) -> Any:
        """Key changes are recorded by the key service itself; this only announces them."""

        async def sink(routing_key: str, payload: dict[str, Any], row: EventRecord) -> None:
            await events.announce(routing_key, payload, event_id=row.id, at=row.at)

        return sink
