"""Seed 000's ``devicescan`` and ``hwinfo_queue`` as earlier hwfleet versions left them.

hwfleet now declares both exactly as the seed's reference device client does
(a non-durable fanout; a durable queue without arguments), so reference
devices can declare them too. Brokers that ran an earlier hwfleet hold a
*durable* ``devicescan`` and a quorum ``hwinfo_queue`` with a dead-letter
argument; declaring either differently fails with ``PRECONDITION_FAILED``.

What happens then, never a crash loop:

* replaced, when the broker itself can guarantee nothing is lost: the exchange
  is deleted ``if-unused`` (no queue bound to it) and the queue
  ``if-unused`` + ``if-empty``, then declared afresh (a warning says so);
* otherwise (devices bound, replies waiting, or a quorum queue, which refuses
  conditional deletes) it is used as it is and an error says what the
  operator has to do; hwfleet's own devices keep working meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any

import aiormq.exceptions
from aio_pika.abc import AbstractRobustConnection

log = logging.getLogger(__name__)


async def _raw_channel(conn: AbstractRobustConnection) -> aiormq.abc.AbstractChannel:
    # A plain aiormq channel: a refused declare closes it, and it must not be "restored".
    await conn.ready()
    assert conn.transport is not None
    return await conn.transport.connection.channel()


async def _close(channel: aiormq.abc.AbstractChannel) -> None:
    if not channel.is_closed:
        await channel.close()


async def declare_seed_exchange(conn: AbstractRobustConnection, name: str) -> bool:
    """True when ``name`` is (now) the non-durable fanout; False: an old one kept as it is."""
    probe = await _raw_channel(conn)
    try:
        await probe.exchange_declare(name, exchange_type="fanout", durable=False)
        return True
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        refused = exc
    finally:
        await _close(probe)
    probe = await _raw_channel(conn)
    try:
        await probe.exchange_delete(name, if_unused=True)
        await probe.exchange_declare(name, exchange_type="fanout", durable=False)
    except aiormq.exceptions.AMQPError as exc:
        log.error(
            "exchange %s exists as declared by an earlier hwfleet (%s), and devices are bound "
            "to it (%s), so hwfleet uses it as it is. Seed-000 reference devices cannot "
            "declare it until it is a non-durable fanout: with every device stopped, delete it "
            "(management UI, or `rabbitmqadmin delete exchange name=%s`) and start hwfleet "
            "again, which declares it afresh",
            name,
            refused,
            exc,
            name,
        )
        return False
    finally:
        await _close(probe)
    log.warning("exchange %s: replaced the durable one an earlier hwfleet declared", name)
    return True


async def migrate_seed_queue(url: str, name: str, arguments: dict[str, Any]) -> bool:
    """Replace ``name`` (declared with other arguments) if nothing can be lost; True if done.

    On a connection of its own: a quorum queue answers a conditional delete by closing the
    whole connection (``NOT_IMPLEMENTED``), which must not be the bus's.
    """
    try:
        conn = await aiormq.connect(url)
    except (aiormq.exceptions.AMQPError, OSError) as exc:
        log.error("queue %s: could not connect to check it (%s); using it as it is", name, exc)
        return False
    try:
        probe = await conn.channel()
        await probe.queue_delete(name, if_unused=True, if_empty=True)
        await probe.queue_declare(name, durable=True, arguments=arguments)
    except aiormq.exceptions.AMQPError as exc:
        wanted = "a quorum queue" if arguments else "a classic queue without arguments"
        log.error(
            "queue %s exists with other arguments than hwfleet declares (an earlier hwfleet, "
            "or another --scan-queue-quorum) and cannot be replaced without risk (%s); hwfleet "
            "uses it as it "
            "is, but seed-000 reference devices cannot declare it. To migrate: when no scan "
            "is running, stop the controllers, check it is empty (`rabbitmqctl list_queues "
            "name messages`), delete it (`rabbitmqctl delete_queue %s`) and start them again: "
            "they declare it as %s and apply the policy for the rest",
            name,
            exc,
            name,
            wanted,
        )
        return False
    finally:
        if not conn.is_closed:
            await conn.close()
    log.warning("queue %s: replaced the empty, unused one an earlier hwfleet declared", name)
    return True
