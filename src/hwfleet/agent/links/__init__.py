"""How an agent reaches its controller: the :class:`Link` protocol and its carriers.

One envelope, two carriers (DESIGN §2): :mod:`.stream` is the TLS line-JSON
stream to the controller's gateway, :mod:`.bus` the AMQP carrier on a shared
bus, :mod:`.amqp` the same with this device's own RabbitMQ user
(:mod:`.bus_credentials` gets it from the controller). Before connecting each
link calls :func:`.enroll.ensure_enrolled` (first contact: the password or
token traded for a certificate); :mod:`.tls` then builds the mutual-TLS
context. The runtime (:mod:`hwfleet.agent.runtime`) never knows which link
carries it.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Link(Protocol):
    """A running connection to the controller: ``run`` until ``stop``, ``connected`` while up."""

    connected: asyncio.Event

    async def run(self) -> None: ...

    def stop(self) -> None: ...


__all__ = ["Link"]
