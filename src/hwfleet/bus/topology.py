"""The bus topology of DESIGN §4: exchanges, queues, routing keys and RPC method names.

Code names exchanges and queues *logically* (``events``, ``hwinfo_queue``);
:class:`Topology` maps them to broker names. The configurable prefix (default
``hwfleet.``) goes in front of every name except the two seed 000 fixes
(``devicescan`` and ``hwinfo_queue``), which devices built from that seed
hard-code.

Routing keys are built here, never by string formatting at call sites, so a
word that would change the routing (a ``.``, ``*`` or ``#`` inside a node id)
is refused where it is made instead of silently mis-routing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from hwfleet.errors import BusError
from hwfleet.protocol.methods import LOG_LEVELS as _PROTOCOL_LOG_LEVELS

DEFAULT_PREFIX = "hwfleet."

#: The eight seed-003 logging levels, most severe first; also the logging routing keys.
LOG_LEVELS: tuple[str, ...] = _PROTOCOL_LOG_LEVELS

#: Header carrying why a message was dead-lettered.
REASON_HEADER = "x-hwfleet-reason"
#: Header naming the queue (or ``exchange/routing-key``) a dead-lettered message came from.
ORIGIN_HEADER = "x-hwfleet-origin"

#: The logical name of the dead-letter exchange and of its durable queue.
DEAD_LETTER = "dead-letter"
#: Seed 000's scan-reply work queue (never prefixed).
HWINFO_QUEUE = "hwinfo_queue"
#: Seed 000's scan-command fanout (never prefixed).
DEVICESCAN = "devicescan"

_UNPREFIXED = frozenset({DEVICESCAN, HWINFO_QUEUE})
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]*")


class ExchangeType(StrEnum):
    TOPIC = "topic"
    FANOUT = "fanout"


@dataclass(frozen=True, slots=True)
class ExchangeSpec:
    """One logical exchange: its AMQP type, RPC methods and documented routing keys."""

    name: str
    type: ExchangeType
    purpose: str
    rpc_methods: tuple[str, ...] = ()
    routing_keys: tuple[str, ...] = ()
    durable: bool = True


def _rpc(*names: str) -> tuple[str, ...]:
    return names


EXCHANGES: MappingProxyType[str, ExchangeSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            # Non-durable, as seed 000's reference client declares it: an equivalent
            # declaration is what lets those devices share the exchange with hwfleet.
            ExchangeSpec(
                DEVICESCAN, ExchangeType.FANOUT, "scan command to every device", durable=False
            ),
            ExchangeSpec(
                "configuration",
                ExchangeType.TOPIC,
                "RPC: read and change live settings",
                rpc_methods=_rpc("get", "set"),
            ),
            ExchangeSpec(
                "events",
                ExchangeType.TOPIC,
                "one-to-many broadcast of everything that happens",
                routing_keys=(
                    "tftp.success.<nodeid>",
                    "tftp.failure.<nodeid>",
                    "http.response.<nodeid>",
                    "dhcp.bind.success.<nodeid>",
                    "task.finished.<taskid>",
                    "graph.started.<graphid>",
                    "graph.finished.<graphid>",
                    "sku.assigned.<nodeid>",
                    "device.online.<uuid>",
                    "device.offline.<uuid>",
                    "enrollment.<requested|approved|rejected|revoked>.<uuid>",
                    "scan.started.<operationid>",
                    "scan.device.<operationid>.<sn>",
                    "scan.refused.<operationid>",
                    "scan.finished.<operationid>",
                    "image.<added|deleted>.<imageid>",
                ),
            ),
            # Not recorded: moment-to-moment progress for dashboards (docs/dashboard.md).
            ExchangeSpec(
                "progress",
                ExchangeType.TOPIC,
                "live progress for dashboards, not recorded (the state is in the store)",
                routing_keys=("task.<taskid>", "graph.<graphid>", "outbox.<kind>"),
            ),
            ExchangeSpec(
                "http", ExchangeType.TOPIC, "HTTP boot service", routing_keys=("http.response",)
            ),
            ExchangeSpec(
                "dhcp",
                ExchangeType.TOPIC,
                "RPC: interrogate the DHCP service",
                rpc_methods=_rpc(
                    "lookupIpLease",
                    "ipInRange",
                    "peekLeaseTable",
                    "removeLease",
                    "removeLeaseByIp",
                    "pinMac",
                    "unpinMac",
                    "pinIp",
                    "unpinIp",
                ),
            ),
            ExchangeSpec("tftp", ExchangeType.TOPIC, "TFTP boot service (events go to events)"),
            ExchangeSpec(
                "logging",
                ExchangeType.TOPIC,
                "agent and controller logs, routed by level",
                routing_keys=LOG_LEVELS,
            ),
            ExchangeSpec(
                "task-graph-runner",
                ExchangeType.TOPIC,
                "RPC: the workflow engine",
                rpc_methods=_rpc(
                    "getTaskGraphLibrary",
                    "getTaskLibrary",
                    "getActiveTaskGraph",
                    "getActiveTaskGraphs",
                    "defineTaskGraph",
                    "defineTask",
                    "runTaskGraph",
                    "cancelTaskGraph",
                    "pauseTaskGraph",
                    "resumeTaskGraph",
                    "getTaskGraphProperties",
                ),
            ),
            ExchangeSpec(
                "scheduler", ExchangeType.TOPIC, "schedule tasks", routing_keys=("schedule",)
            ),
            ExchangeSpec(
                "task",
                ExchangeType.TOPIC,
                "tasks interrogating and driving their graphs",
                rpc_methods=_rpc(
                    "requestProfile.<id>",
                    "requestProperties.<id>",
                    "requestCommands.<id>",
                    "respondCommands.<id>",
                    "getBootProfile.<nodeid>",
                    "activeTaskExists.<nodeid>",
                    "requestPollerCache",
                ),
                routing_keys=(
                    "run.<taskid>",
                    "cancel.<taskid>",
                    "ipmi.command.<command>.<graphid>",
                    "ipmi.command.<command>.result.<graphid>",
                    "run.snmp.command.<graphid>",
                    "snmp.command.result.<graphid>",
                    "poller.alert.<graphid>",
                ),
            ),
            ExchangeSpec(
                "agents",
                ExchangeType.TOPIC,
                "AMQP carrier: controller replica to agent, routing key = device uuid",
                routing_keys=("<uuid>",),
            ),
            ExchangeSpec(
                "controllers",
                ExchangeType.TOPIC,
                "AMQP carrier: agent replies to one controller replica, key = replica id",
                routing_keys=("<replica>",),
            ),
            ExchangeSpec(
                "uplink",
                ExchangeType.TOPIC,
                "AMQP carrier, per-device users: all a device sends; keys start with its uuid",
                routing_keys=("<uuid>.inbound", "<uuid>.hwinfo", "<uuid>.reply.<replica>"),
            ),
            ExchangeSpec(
                DEAD_LETTER,
                ExchangeType.FANOUT,
                f"rejected messages, reason in {REASON_HEADER}",
            ),
        )
    }
)


class UnknownNameError(BusError, ValueError):
    """A logical exchange name that DESIGN §4 does not define."""


class Topology:
    """Maps logical names to broker names under one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not _PREFIX_RE.fullmatch(prefix):
            raise ValueError(
                f"bus prefix {prefix!r} may only hold letters, digits and '_.:-' characters"
            )
        self.prefix = prefix

    def spec(self, exchange: str) -> ExchangeSpec:
        try:
            return EXCHANGES[exchange]
        except KeyError:
            hint = ""
            if self.prefix and exchange.startswith(self.prefix):
                hint = f" (give the logical name {exchange[len(self.prefix) :]!r}, no prefix)"
            known = ", ".join(sorted(EXCHANGES))
            raise UnknownNameError(f"unknown exchange {exchange!r}{hint}; known: {known}") from None

    def exchange(self, exchange: str) -> str:
        """The broker name of a logical exchange."""
        spec = self.spec(exchange)
        return spec.name if spec.name in _UNPREFIXED else self.prefix + spec.name

    def queue(self, queue: str) -> str:
        """The broker name of a logical work queue (``hwinfo_queue`` keeps its seed name)."""
        if not queue or len(queue) > 200:
            raise ValueError(f"queue name {queue!r} must be 1 to 200 characters")
        if queue.startswith("amq."):
            raise ValueError(f"queue name {queue!r}: the 'amq.' prefix is reserved by AMQP")
        return queue if queue in _UNPREFIXED else self.prefix + queue

    def rpc_queue(self, exchange: str) -> str:
        """The queue every server of ``exchange`` shares (competing consumers)."""
        return self.exchange(exchange) + ".rpc"

    @property
    def dead_letter_exchange(self) -> str:
        return self.prefix + DEAD_LETTER

    @property
    def dead_letter_queue(self) -> str:
        return self.prefix + DEAD_LETTER

    def declared(self) -> list[tuple[str, ExchangeSpec]]:
        """Every exchange to declare at start, as ``(broker name, spec)``."""
        return [(self.exchange(name), spec) for name, spec in EXCHANGES.items()]


def word(value: object) -> str:
    """One routing-key word; refuses what would change routing rather than mangle it."""
    text = str(value)
    if not text or "." in text or "*" in text or "#" in text or len(text) > 200:
        raise ValueError(
            f"{text!r} cannot be a routing-key word (empty, too long, or holds '.', '*' or '#')"
        )
    return text


def method_key(method: str) -> str:
    """The routing key of an RPC method: ``methods.<method>`` (``method`` may hold dots)."""
    if not method or method.startswith(".") or method.endswith("."):
        raise ValueError(f"{method!r} is not an RPC method name")
    return "methods." + method


def log_key(level: str) -> str:
    """Routing key on ``logging`` for a seed level (``warn`` is accepted for ``warning``)."""
    name = "warning" if level == "warn" else level
    if name not in LOG_LEVELS:
        raise ValueError(f"{level!r} is not a logging level (one of {' '.join(LOG_LEVELS)})")
    return name


def level_for(levelno: int) -> str:
    """The seed level for a Python ``logging`` level number."""
    if levelno >= 50:
        return "alert"
    if levelno >= 40:
        return "error"
    if levelno >= 30:
        return "warning"
    if levelno >= 20:
        return "info"
    return "debug" if levelno >= 10 else "silly"


class EventKey:
    """Routing keys on ``events`` that hwfleet publishes (docs/bus.md lists seed 003's others)."""

    @staticmethod
    def task_finished(task_id: object) -> str:
        return f"task.finished.{word(task_id)}"

    @staticmethod
    def device_online(uuid: object) -> str:
        return f"device.online.{word(uuid)}"

    @staticmethod
    def device_offline(uuid: object) -> str:
        return f"device.offline.{word(uuid)}"

    @staticmethod
    def device_discovered(uuid: object) -> str:
        return f"device.discovered.{word(uuid)}"

    @staticmethod
    def device_spoofed(uuid: object) -> str:
        return f"device.spoofed.{word(uuid)}"

    @staticmethod
    def scan_started(operation_id: object) -> str:
        return f"scan.started.{word(operation_id)}"

    @staticmethod
    def scan_device(operation_id: object, serial: object) -> str:
        return f"scan.device.{word(operation_id)}.{word(serial)}"

    @staticmethod
    def scan_refused(operation_id: object) -> str:
        return f"scan.refused.{word(operation_id)}"

    @staticmethod
    def scan_finished(operation_id: object) -> str:
        return f"scan.finished.{word(operation_id)}"

    @staticmethod
    def image(what: str, image_id: object) -> str:
        """An image added to or deleted from the registry (``what``: added, deleted)."""
        if what not in ("added", "deleted"):
            raise ValueError(f"{what!r} is not an image change (added, deleted)")
        return f"image.{what}.{word(image_id)}"

    ENROLLMENT_STATES = ("requested", "approved", "rejected", "revoked")

    @staticmethod
    def enrollment(state: str, uuid: object) -> str:
        if state not in EventKey.ENROLLMENT_STATES:
            raise ValueError(
                f"{state!r} is not an enrollment state ({', '.join(EventKey.ENROLLMENT_STATES)})"
            )
        return f"enrollment.{state}.{word(uuid)}"
