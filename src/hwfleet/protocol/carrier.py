"""Names the AMQP carrier uses to move seed-001 envelopes over the bus.

* agent → any controller replica: the durable work queue ``agent.inbound``
  (competing consumers), header ``x-hwfleet-device`` naming the sender;
* controller replica → agent: the ``agents`` topic exchange, routing key = the
  device uuid, header ``x-hwfleet-reply`` naming the replica that expects the
  reply;
* agent → that replica: the ``controllers`` topic exchange, routing key = the
  replica id.

A device with its own RabbitMQ user (per-device credentials, docs/bus.md)
may publish only to the ``uplink`` topic exchange, with routing keys that
start with its uuid (RabbitMQ topic permissions enforce it):
``<uuid>.inbound`` (bound to ``agent.inbound``), ``<uuid>.hwinfo`` (bound to
``hwinfo_queue``) and ``<uuid>.reply.<replica>``; it consumes the exclusive
queues ``agent.<uuid>`` (bound to ``agents`` with its uuid) and
``agent.<uuid>.scan`` (bound to ``devicescan``).

Commands from an agent may be handled by any replica; replies to a replica's
own calls come back to that replica. docs/bus.md draws the picture.
"""

from __future__ import annotations

import uuid as uuidlib

AGENTS_EXCHANGE = "agents"
CONTROLLERS_EXCHANGE = "controllers"
UPLINK_EXCHANGE = "uplink"
INBOUND_QUEUE = "agent.inbound"
DEVICE_HEADER = "x-hwfleet-device"
REPLY_HEADER = "x-hwfleet-reply"

#: A device's own RabbitMQ user is this prefix plus its uuid.
DEVICE_USER_PREFIX = "hwfleet-device-"
#: Uplink routing-key words after the uuid.
UPLINK_INBOUND = "inbound"
UPLINK_HWINFO = "hwinfo"
UPLINK_REPLY = "reply"


def device_user(device: str) -> str:
    """The RabbitMQ user name of a device with per-device credentials."""
    return DEVICE_USER_PREFIX + device


def device_of_user(user_id: str | None) -> str | None:
    """The device uuid a per-device user name stands for, or None for any other user."""
    if not user_id or not user_id.startswith(DEVICE_USER_PREFIX):
        return None
    try:
        return str(uuidlib.UUID(user_id[len(DEVICE_USER_PREFIX) :]))
    except ValueError:
        return None


def device_queue(device: str, kind: str = "") -> str:
    """Logical name of a device's own exclusive queue (``agent.<uuid>[.<kind>]``)."""
    return f"agent.{device}.{kind}" if kind else f"agent.{device}"


def uplink_key(device: str, kind: str, replica: str | None = None) -> str:
    """Routing key on ``uplink``: ``<uuid>.<kind>`` or ``<uuid>.reply.<replica>``."""
    return f"{device}.{kind}.{replica}" if replica is not None else f"{device}.{kind}"


def uplink_sender(routing_key: str) -> str:
    """The device an uplink routing key speaks for (its first word)."""
    return routing_key.split(".", 1)[0]
