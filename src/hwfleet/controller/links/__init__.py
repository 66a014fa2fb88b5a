"""The controller's links to its agents: one envelope, two carriers (DESIGN §2).

Every controller↔agent message is the seed-001 envelope. It arrives either as
a line on a TLS stream (``stream_gateway``: the embedded default, no broker)
or as an AMQP message through RabbitMQ (``bus_gateway``: the scale-out path,
each message's broker-validated sender checked by ``senders``). Both carriers
hand every request to the same ``agent_methods``, with an ``AgentContext``
saying who is on the other end; ``admission`` serves the methods that let a
device in (hello, enrollment, bus credentials) and ``guard`` paces and caps
the links that have not identified themselves. Business logic behind
``agent_methods`` never knows which carrier delivered a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwfleet._lazy import lazy_exports

if TYPE_CHECKING:
    from hwfleet.controller.links.admission import Admission
    from hwfleet.controller.links.agent_methods import AgentContext, AgentMethods
    from hwfleet.controller.links.bus_gateway import BusGateway
    from hwfleet.controller.links.guard import AnonymousGuard, AnonymousLimits
    from hwfleet.controller.links.senders import SenderCheck
    from hwfleet.controller.links.stream_gateway import StreamGateway

# Exports resolve on first use (see hwfleet._lazy): the scan imports SenderCheck without
# loading both gateways.
_EXPORTS = {
    "Admission": "admission",
    "AgentContext": "agent_methods",
    "AgentMethods": "agent_methods",
    "BusGateway": "bus_gateway",
    "AnonymousGuard": "guard",
    "AnonymousLimits": "guard",
    "SenderCheck": "senders",
    "StreamGateway": "stream_gateway",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "Admission",
    "AgentContext",
    "AgentMethods",
    "AnonymousGuard",
    "AnonymousLimits",
    "BusGateway",
    "SenderCheck",
    "StreamGateway",
]
