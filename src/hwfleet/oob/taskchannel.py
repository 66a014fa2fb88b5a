"""Seed 003's task-channel commands for graph tasks, answered on the ``task`` exchange.

``ipmi.command.<power|sel|sdr>.<graphid>`` with ``{"node", "action"?}`` is answered on
``ipmi.command.<cmd>.result.<graphid>``; ``run.snmp.command.<graphid>`` with ``{"node",
"command": "sensors"|"get", "oids"?}`` on ``snmp.command.result.<graphid>``. Each answer
is ``{"node", "command", "result"}`` or ``{"node", "command", "error"}``. Requests sit on
durable work queues so replicas share them and one arriving while no controller runs
waits. The ``ipmi`` commands use the node's own driver, whatever protocol that is.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from hwfleet.bus.base import Bus, Delivery, Subscription
from hwfleet.bus.topology import word
from hwfleet.oob.driver import BmcDriver, BmcError
from hwfleet.oob.service import NoBmcError, OobService

log = logging.getLogger(__name__)

IPMI_QUEUE = "oob.ipmi-commands"
SNMP_QUEUE = "oob.snmp-commands"
_POWER = ("on", "off", "cycle", "reset", "status")


def _work(command: str, body: dict[str, Any]) -> Any:
    """The driver call for one request, checked before any BMC is touched."""
    if command == "power":
        action = body.get("action", "status")
        if action not in _POWER:
            raise BmcError("bad_input", f"power action must be one of {', '.join(_POWER)}")
        return lambda d: d.power(action)
    if command in ("sel", "sdr"):
        return lambda d: d.poll(command)
    if command == "sensors":
        return lambda d: d.poll("sdr")
    if command == "get":
        oids = body.get("oids")
        if not isinstance(oids, list) or not oids or not all(isinstance(o, str) for o in oids):
            raise BmcError("bad_input", "'oids' must be a non-empty list of OID strings")

        def get(d: BmcDriver) -> Any:
            getter = getattr(d, "get_oids", None)
            if getter is None:
                raise BmcError("unsupported", "this node's BMC is not reached over SNMP")
            return getter(oids)

        return get
    raise BmcError("bad_input", f"unknown command {command!r}")


class TaskChannel:
    def __init__(self, bus: Bus, oob: OobService) -> None:
        self.bus = bus
        self.oob = oob
        self._subs: list[Subscription] = []

    async def start(self) -> None:
        await self.bus.bind(IPMI_QUEUE, "task", "ipmi.command.*.*")
        await self.bus.bind(SNMP_QUEUE, "task", "run.snmp.command.*")
        self._subs.append(await self.bus.consume(IPMI_QUEUE, self._ipmi))
        self._subs.append(await self.bus.consume(SNMP_QUEUE, self._snmp))

    async def close(self) -> None:
        for sub in self._subs:
            await sub.cancel()

    async def _ipmi(self, delivery: Delivery) -> None:
        parts = delivery.routing_key.split(".")
        if len(parts) != 4 or parts[2] not in ("power", "sel", "sdr"):
            log.warning(
                "ignored task message %s: not ipmi.command.<cmd>.<graphid>", delivery.routing_key
            )
            return
        command, graph = parts[2], parts[3]
        await self._answer(delivery, command, f"ipmi.command.{command}.result.{word(graph)}")

    async def _snmp(self, delivery: Delivery) -> None:
        graph = delivery.routing_key.rsplit(".", 1)[-1]
        body = _decode(delivery)
        command = str(body.get("command", "sensors")) if body else "sensors"
        await self._answer(delivery, command, f"snmp.command.result.{word(graph)}")

    async def _answer(self, delivery: Delivery, command: str, reply_key: str) -> None:
        body = _decode(delivery)
        node = body.get("node") if body else None
        reply: dict[str, Any] = {"node": node, "command": command}
        try:
            if not isinstance(node, str) or not node:
                raise BmcError("bad_input", "the request needs 'node': the node's uuid")
            reply["result"] = await self.oob.run(node, _work(command, body or {}))
        except (BmcError, NoBmcError) as exc:
            reply["error"] = str(exc)
        await self.bus.publish("task", reply_key, reply)


def _decode(delivery: Delivery) -> dict[str, Any] | None:
    try:
        body = json.loads(delivery.body)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
