"""Many unconfirmed publishes in one write: the frames of every message, one drain.

aiormq's ``basic_publish`` costs a timer, a lock, a random message id, a queued write
and a wait for the socket drain per message: a scan announcing one event per device
spent more CPU on that than on anything else it does per device (``bench/scan.py``).
On a channel without publisher confirms nothing waits per message, so a batch can go as
one payload: each message's ``basic.publish``, content header and body frames, in
order, written once. The broker sees exactly the frames ``basic_publish`` would send
(without aiormq's random ``message_id``, which nothing here reads).

Only for channels without confirms: with confirms each message needs its own delivery
tag and confirmation future, which is what ``basic_publish`` is for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiormq
from aiormq.abc import ChannelFrame, FrameType
from pamqp import commands as spec
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

#: Messages per write: bounds one payload (a few hundred KB for scan events).
BATCH = 1000


def _frames(
    exchange: str,
    messages: Sequence[tuple[str, bytes]],
    properties: spec.Basic.Properties,
    max_content: int,
) -> list[FrameType | ContentBody]:
    frames: list[FrameType | ContentBody] = []
    for routing_key, body in messages:
        frames.append(spec.Basic.Publish(exchange=exchange, routing_key=routing_key))
        frames.append(ContentHeader(properties=properties, body_size=len(body)))
        # A body larger than the broker's frame size goes in several body frames.
        frames.extend(
            ContentBody(body[i : i + max_content]) for i in range(0, len(body), max_content)
        )
    return frames


async def publish_unconfirmed(
    channel: aiormq.Channel,
    exchange: str,
    messages: Sequence[tuple[str, bytes]],
    properties: spec.Basic.Properties,
    timeout: float,
) -> None:
    """Write ``(routing_key, body)`` messages to ``exchange`` and wait until they are sent.

    ``timeout`` bounds each batch's wait for the socket (as ``basic_publish``'s does).
    """
    if channel.publisher_confirms:
        raise ValueError("publish_unconfirmed is for channels without publisher confirms")
    for routing_key, _ in messages:
        if len(routing_key.encode()) > 255:  # as basic_publish checks, before anything is sent
            raise ValueError(f"routing key longer than 255 bytes: {routing_key[:60]!r}…")
    loop = asyncio.get_running_loop()
    for start in range(0, len(messages), BATCH):
        chunk = messages[start : start + BATCH]
        drained: asyncio.Future[None] = loop.create_future()
        frames = _frames(exchange, chunk, properties, channel.max_content_size)
        # The channel's lock keeps another publish's frames from landing between ours (and
        # raises ChannelInvalidStateError on a closed channel).
        async with asyncio.timeout(timeout), channel.lock:
            await channel.write_queue.put(
                ChannelFrame.marshall(
                    channel_number=channel.number, frames=frames, drain_future=drained
                )
            )
            await drained
