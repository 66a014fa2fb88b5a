"""Who sent a device message on the bus: the broker-validated user, checked against the claim.

RabbitMQ refuses a publish whose AMQP ``user_id`` is not the connection's
user, so ``Delivery.user_id`` proves who sent a message (when it is set). A
device with per-device credentials is the user ``hwfleet-device-<uuid>`` and
stamps every publish with it; through the ``uplink`` exchange the broker also
makes the routing key start with its uuid (topic permissions).

With per-device credentials on (``--bus-credentials``), a device message whose
user is not the device it claims to be (``x-hwfleet-device`` header, the scan
reply's ``uuid``, the uplink routing key) is dead-lettered with the reason.
Off, a device speaking with shared credentials is accepted, and the first one
is reported with a warning (once per process) so operators know it can be
impersonated by any other holder of those credentials.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from hwfleet.bus.base import Delivery, RejectedMessageError
from hwfleet.bus.topology import DEFAULT_PREFIX, Topology
from hwfleet.protocol.carrier import (
    UPLINK_EXCHANGE,
    device_of_user,
    device_user,
    uplink_sender,
)

if TYPE_CHECKING:
    from hwfleet.bus.base import Bus
    from hwfleet.settings import ServerSettings

log = logging.getLogger(__name__)


def bus_user(url: str) -> str | None:
    """The user name an AMQP URL logs in with (None when it names none, or not AMQP)."""
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps") or not parts.username:
        return None
    return unquote(parts.username)


class SenderCheck:
    """Checks device messages against their broker-validated sender."""

    def __init__(
        self,
        *,
        strict: bool,
        controller_user: str | None,
        prefix: str = DEFAULT_PREFIX,
        warn_shared: bool = False,
    ) -> None:
        #: Per-device credentials are on: a device must speak as its own user.
        self.strict = strict
        #: The controller's own bus user: it relays stream agents' scan replies.
        self.controller_user = controller_user
        self._uplink = Topology(prefix).exchange(UPLINK_EXCHANGE)
        # Only a broker has users: on memory:// there is nothing to warn about.
        self._warned = not warn_shared

    @classmethod
    def for_controller(cls, settings: ServerSettings, bus: Bus) -> SenderCheck:
        topology = getattr(bus, "topology", None)
        return cls(
            strict=bool(settings.bus_credentials),
            controller_user=bus_user(bus.url),
            prefix=topology.prefix if isinstance(topology, Topology) else DEFAULT_PREFIX,
            warn_shared=urlsplit(bus.url).scheme in ("amqp", "amqps"),
        )

    def _check_uplink(self, delivery: Delivery, device: str) -> None:
        if delivery.exchange == self._uplink and uplink_sender(delivery.routing_key) != device:
            raise RejectedMessageError(
                f"uplink key {delivery.routing_key!r} does not start with the sender {device}"
            )

    def device(self, delivery: Delivery, device: str) -> None:
        """A carrier message from ``device`` (its header); RejectedMessageError if it may not be."""
        self._check_uplink(delivery, device)
        expected = device_user(device)
        if delivery.user_id == expected:
            return
        if device_of_user(delivery.user_id) is not None:  # another device's own user: forged
            raise RejectedMessageError(
                f"sent by user {delivery.user_id!r}, which may not speak for device {device}"
            )
        if self.strict:
            raise RejectedMessageError(
                f"sent by user {delivery.user_id!r}, which may not speak for device {device}"
                f" (per-device bus credentials are on: expected {expected})"
            )
        if not self._warned:
            self._warned = True
            log.warning(
                "device %s is on the bus with shared credentials (user %r): any holder of "
                "those credentials can speak for any device. Turn on per-device credentials "
                "(--bus-credentials rabbitmqctl or the management API URL)",
                device,
                delivery.user_id,
            )

    def scan_reply(self, delivery: Delivery, claimed: str | None) -> str | None:
        """The uuid a scan reply may be counted for; raises RejectedMessageError for a forged one.

        A reply from a device's own user counts for that device only; with
        per-device credentials on, anything else must come from the controller
        itself (replies of stream agents that a replica relays).
        """
        sender = device_of_user(delivery.user_id)
        if sender is not None:
            self._check_uplink(delivery, sender)
            if claimed is not None and _canonical(claimed) != sender:
                raise RejectedMessageError(f"scan reply for {claimed!r} sent by device {sender}")
            return sender
        if self.strict and (
            delivery.exchange == self._uplink or delivery.user_id != self.controller_user
        ):
            raise RejectedMessageError(
                f"scan reply sent by user {delivery.user_id!r}: per-device bus credentials"
                " are on, so only a device's own user (or the controller) may send one"
            )
        if claimed is not None:
            self._check_uplink(delivery, _canonical(claimed) or claimed)
        return claimed


def _canonical(value: str) -> str | None:
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        return None
