"""What an agent may ask of the controller: handshake, ping, log, task_status.

Every method except ``handshake`` (and ``enroll`` on a TLS link without a
client certificate) is refused until the peer has identified itself.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hwfleet.controller.devices import Connection, DeviceRegistry
from hwfleet.protocol import methods
from hwfleet.protocol.errors import ErrorCode, MethodError
from hwfleet.protocol.methods import MethodRegistry
from hwfleet.protocol.session import Session

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus
    from hwfleet.controller.tasks import TaskService

log = logging.getLogger(__name__)

#: The device uuid a verified client certificate names (None on plain or cert-less links).
IdentityCheck = Callable[["AgentContext", methods.Handshake], Awaitable[None]]


@dataclass(slots=True)
class AgentContext:
    """Per-connection state on the controller side."""

    ipaddr: str
    transport: str
    drop: Callable[[], None]
    session: Session[Any] | None = None
    uuid: str | None = None
    #: Device uuid from a verified client certificate (mTLS), if any.
    cert_uuid: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Called once ``handshake`` has succeeded (the gateway frees the link's connecting slot).
    on_identified: Callable[[], None] | None = None


class AgentMethods:
    """Builds the registry the gateway (and the AMQP carrier) dispatch agent commands through."""

    def __init__(
        self,
        devices: DeviceRegistry,
        tasks: TaskService,
        bus: Bus,
        *,
        identity_check: IdentityCheck | None = None,
    ) -> None:
        self._devices = devices
        self._tasks = tasks
        self._bus = bus
        self._identity_check = identity_check
        self.registry: MethodRegistry[AgentContext] = MethodRegistry()
        self.registry.add(methods.HANDSHAKE, self.handshake, methods.Handshake)
        self.registry.add(methods.PING, self.ping)
        self.registry.add(methods.LOG, self.log, methods.LogParams)
        self.registry.add(methods.TASK_STATUS, self.task_status, methods.TaskStatus)

    def add(self, method: str, handler: Any, params: type[Any] | None = None) -> None:
        """Register an extra agent→controller method (e.g. ``enroll``)."""
        self.registry.add(method, handler, params)

    @staticmethod
    def require(ctx: AgentContext) -> str:
        if ctx.uuid is None:
            raise MethodError("identify first: send handshake", ErrorCode.UNAUTHORIZED)
        return ctx.uuid

    async def handshake(self, ctx: AgentContext, hs: methods.Handshake) -> dict[str, Any]:
        # A stream identifies once per connection; a bus agent re-identifies after a restart.
        if ctx.uuid is not None and ctx.transport != "amqp":
            raise MethodError("already identified", ErrorCode.BAD_REQUEST)
        if ctx.cert_uuid is not None and hs.uuid != ctx.cert_uuid:
            raise MethodError(
                f"this link belongs to device {ctx.cert_uuid}, not {hs.uuid}", ErrorCode.REFUSED
            )
        if self._identity_check is not None:
            await self._identity_check(ctx, hs)
        assert ctx.session is not None
        ctx.uuid = hs.uuid
        await self._devices.attach(
            Connection(
                uuid=hs.uuid,
                session=ctx.session,
                transport=ctx.transport,
                ipaddr=ctx.ipaddr or _reported_address(hs.ipaddr),
                handshake=hs,
                drop=ctx.drop,
            )
        )
        await self._tasks.reconcile(hs.uuid, hs.tasks)
        if ctx.on_identified is not None:
            ctx.on_identified()
        return {"accepted": True, "uuid": hs.uuid}

    async def ping(self, ctx: AgentContext, params: dict[str, Any]) -> dict[str, Any]:
        self._devices.seen(self.require(ctx))
        return params

    async def log(self, ctx: AgentContext, params: methods.LogParams) -> dict[str, Any]:
        uuid = self.require(ctx)
        level = params.level if params.level in methods.LOG_LEVELS else "info"
        body = {"uuid": uuid, "level": level, "msg": params.msg, "fields": params.fields}
        await self._bus.publish("logging", level, body)
        return {}

    async def task_status(self, ctx: AgentContext, status: methods.TaskStatus) -> dict[str, Any]:
        uuid = self.require(ctx)
        self._devices.seen(uuid)
        record = await self._tasks.update(uuid, status)
        return {"state": record.state}


def _reported_address(text: str) -> str:
    """An address a bus agent reports for itself (the controller cannot see it): kept only
    if it is an IP address; a stream link's peer address always wins over it."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return ""
