"""The controller checks who sent a device message against the device it claims to be."""

from __future__ import annotations

import logging

import pytest

from hwfleet.bus.base import Delivery, RejectedMessageError
from hwfleet.controller.links.senders import SenderCheck, bus_user
from hwfleet.protocol.carrier import device_user

DEVICE = "3f2a0000-0000-4000-8000-000000000001"
OTHER = "3f2a0000-0000-4000-8000-000000000002"


def delivery(user: str | None, exchange: str = "", key: str = "agent.inbound") -> Delivery:
    return Delivery(exchange=exchange, routing_key=key, body=b"{}", user_id=user)


def test_strict_mode_wants_the_devices_own_user() -> None:
    check = SenderCheck(strict=True, controller_user="guest")
    check.device(delivery(device_user(DEVICE), "hwfleet.uplink", f"{DEVICE}.inbound"), DEVICE)
    for user in ("guest", None, device_user(OTHER)):
        with pytest.raises(RejectedMessageError, match="may not speak for device"):
            check.device(delivery(user), DEVICE)
    with pytest.raises(RejectedMessageError, match="does not start with the sender"):
        check.device(delivery(device_user(DEVICE), "hwfleet.uplink", f"{OTHER}.inbound"), DEVICE)


def test_shared_credentials_are_accepted_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = SenderCheck(strict=False, controller_user="guest", warn_shared=True)
    with caplog.at_level(logging.WARNING):
        check.device(delivery("guest"), DEVICE)
        check.device(delivery("guest"), OTHER)
    warnings = [r for r in caplog.records if "shared credentials" in r.getMessage()]
    assert len(warnings) == 1 and "--bus-credentials" in warnings[0].getMessage()
    # A device's own user still may not speak for another, even when provisioning is off.
    with pytest.raises(RejectedMessageError):
        check.device(delivery(device_user(DEVICE), "hwfleet.uplink", f"{OTHER}.x"), OTHER)


def test_scan_replies_count_for_their_sender_only() -> None:
    strict = SenderCheck(strict=True, controller_user="guest")
    own = delivery(device_user(DEVICE), "hwfleet.uplink", f"{DEVICE}.hwinfo")
    assert strict.scan_reply(own, None) == DEVICE  # an sn-only reply counts for its sender
    assert strict.scan_reply(own, DEVICE.upper()) == DEVICE
    with pytest.raises(RejectedMessageError, match="sent by device"):
        strict.scan_reply(own, OTHER)
    # The controller relays stream agents' replies with its own user.
    assert strict.scan_reply(delivery("guest", "", "hwinfo_queue"), OTHER) == OTHER
    for user in (None, "mallory"):
        with pytest.raises(RejectedMessageError, match="per-device bus credentials are on"):
            strict.scan_reply(delivery(user, "", "hwinfo_queue"), OTHER)
    relaxed = SenderCheck(strict=False, controller_user="guest")
    assert relaxed.scan_reply(delivery(None, "", "hwinfo_queue"), "any-id") == "any-id"
    with pytest.raises(RejectedMessageError):
        relaxed.scan_reply(delivery(device_user(DEVICE), "", "hwinfo_queue"), OTHER)


def test_bus_user_of_a_url() -> None:
    assert bus_user("amqp://guest:guest@h/") == "guest"
    assert bus_user("amqps://o%40ps:x@h/") == "o@ps"
    assert bus_user("amqp://h/") is None and bus_user("memory://") is None
