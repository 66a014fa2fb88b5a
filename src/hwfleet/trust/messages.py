"""The shapes enrollment speaks: the ``enroll`` params and reply, tokens, key views.

``EnrollParams`` and ``EnrollReply`` hide their secrets from ``repr``/``str``,
so one that ends up in a log line or a traceback never shows a password or token.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from hwfleet.trust.tokens import MAX_TOKEN_LENGTH

if TYPE_CHECKING:
    from hwfleet.store import EventRecord

#: Method name of the enrollment call on the agent link (and of the CA preview).
ENROLL = "enroll"
ENROLL_HELLO = "enroll.hello"
#: An enrolled device (mTLS) asks for its own bus credentials (per-device RabbitMQ user).
BUS_CREDENTIALS = "bus.credentials"

MAX_PASSWORD_LENGTH = 1024

#: ``events(routing_key, payload, record)`` — called after the event row is committed;
#: ``record`` is that row (its id and time go into the announcement).
EventSink = Callable[[str, dict[str, Any], "EventRecord"], Awaitable[None] | None]
#: ``on_revoke(device_uuid, fingerprint)`` — drop that device's session now.
RevokeHook = Callable[[str, str], Awaitable[None] | None]

KEY_STATES = ("pending", "accepted", "rejected", "denied")


class EnrollParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``enroll`` params: the device uuid, a PEM CSR, and a password or a token.

    ``transport: "amqp"`` asks for the device's own bus credentials as well.
    """

    uuid: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    csr: Annotated[str, msgspec.Meta(min_length=1, max_length=16 * 1024)]
    password: Annotated[str, msgspec.Meta(max_length=MAX_PASSWORD_LENGTH)] | None = None
    token: Annotated[str, msgspec.Meta(max_length=MAX_TOKEN_LENGTH)] | None = None
    transport: Literal["stream", "amqp"] | None = None

    def __repr__(self) -> str:
        return (
            f"EnrollParams(uuid={self.uuid!r}, csr=<{len(self.csr)} chars>, "
            f"password={'<hidden>' if self.password else None}, "
            f"token={'<hidden>' if self.token else None}, transport={self.transport!r})"
        )

    __str__ = __repr__


class EnrollReply(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The ``enroll`` result.

    ``{"state": "accepted", "key_id", "cert", "ca", "ca_fingerprint"}`` (plus
    ``bus_username``/``bus_password`` when the device asked for bus access and
    the controller provisions per-device credentials) or
    ``{"state": "pending", "key_id"}``.
    """

    state: str
    key_id: str
    cert: str | None = None
    ca: str | None = None
    ca_fingerprint: str | None = None
    bus_username: str | None = None
    bus_password: str | None = None

    def __repr__(self) -> str:
        return (
            f"EnrollReply(state={self.state!r}, key_id={self.key_id!r}, "
            f"cert={'<pem>' if self.cert else None}, bus_username={self.bus_username!r}, "
            f"bus_password={'<hidden>' if self.bus_password else None})"
        )

    __str__ = __repr__

    def to_dict(self) -> dict[str, Any]:
        built: dict[str, Any] = msgspec.to_builtins(self)
        return built


class IssuedToken(msgspec.Struct, kw_only=True):
    """A fresh enrollment token; shown once, never stored in clear."""

    token: str
    expires_at: dt.datetime

    def __repr__(self) -> str:
        return f"IssuedToken(token=<hidden>, expires_at={self.expires_at.isoformat()})"

    __str__ = __repr__


def key_view(record: Any) -> dict[str, Any]:
    """What operators see of a key row (never the CSR or certificate bodies)."""

    def iso(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": record.id,
        "device_uuid": record.device_uuid,
        "fingerprint": record.fingerprint,
        "state": record.state,
        "source": record.source,
        "reason": record.reason,
        "created_at": iso(record.created_at),
        "decided_at": iso(record.decided_at),
    }
