"""Acknowledge a consumer's deliveries in as few ``basic.ack`` frames as the order allows.

A handler that finishes with a batch (the scan's result writer commits a few
hundred replies at once) would otherwise send one ack frame per delivery, and
the broker handle each. :class:`AckBatcher` records every delivery in the
order the broker numbered it; a settled delivery is acknowledged at the end of
the current loop iteration, and the longest run of settled deliveries from
the oldest unsettled one goes out as a single ``multiple`` ack. A delivery
that is still being handled (or that is never settled, so that the broker
requeues it with the channel) stops the run: ``multiple`` can never cover it.
Settled deliveries behind it are acknowledged one by one, at once, so that a
slow handler delays nobody else's ack.

Delivery tags belong to a channel: a robust reconnect starts a new channel
whose tags start again at 1, and whatever was unacknowledged on the old one
the broker redelivers. The batcher therefore starts afresh when a delivery
arrives on another channel.
"""

from __future__ import annotations

import asyncio
import logging

import aiormq.abc
import aiormq.exceptions

log = logging.getLogger(__name__)

#: Acking fails only because the channel went away; the broker then redelivers.
LOST = (ConnectionError, aiormq.exceptions.ChannelInvalidStateError, aiormq.exceptions.AMQPError)


class AckBatcher:
    """One consumer's unsettled deliveries, oldest first, and the acks owed for them."""

    def __init__(self, queue_name: str) -> None:
        self.queue_name = queue_name
        self._channel: aiormq.abc.AbstractChannel | None = None
        #: delivery tag → settled, in the order the broker delivered them.
        self._unsettled: dict[int, bool] = {}
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

    def delivered(self, channel: aiormq.abc.AbstractChannel, tag: int | None) -> None:
        """Record a delivery, before anything awaits (so, in the broker's order)."""
        if channel is not self._channel:
            self._channel = channel
            self._unsettled = {}
        if tag is not None:
            self._unsettled[tag] = False

    def forget(self, channel: aiormq.abc.AbstractChannel, tag: int | None) -> None:
        """The delivery was settled some other way (nack, reject)."""
        if channel is self._channel and tag is not None:
            self._unsettled.pop(tag, None)

    def ack(self, channel: aiormq.abc.AbstractChannel, tag: int | None) -> None:
        """Acknowledge the delivery at the end of this loop iteration (with its neighbours)."""
        if channel is not self._channel or tag not in self._unsettled:
            return  # from a channel that is gone: the broker redelivers it anyway
        self._unsettled[tag] = True
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    @property
    def idle(self) -> bool:
        """No ack is waiting to be sent."""
        return not self._scheduled and not self._sending

    async def drain(self) -> None:
        """Wait until every ack owed so far has been written."""
        while not self.idle:
            if self._scheduled:
                self._flush()
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self) -> None:
        self._scheduled = False
        channel = self._channel
        if channel is None:
            return
        run_end: int | None = None
        run = 0
        for tag, settled in self._unsettled.items():
            if not settled:
                break
            run_end, run = tag, run + 1
        frames: list[tuple[int, bool]] = []
        if run_end is not None:
            for _ in range(run):
                self._unsettled.pop(next(iter(self._unsettled)))
            frames.append((run_end, run > 1))
        behind = [tag for tag, settled in self._unsettled.items() if settled]
        for tag in behind:
            del self._unsettled[tag]
            frames.append((tag, False))
        if frames:
            task = asyncio.create_task(self._send(channel, frames))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(
        self, channel: aiormq.abc.AbstractChannel, frames: list[tuple[int, bool]]
    ) -> None:
        try:
            for tag, multiple in frames:
                await channel.basic_ack(delivery_tag=tag, multiple=multiple)
        except LOST as exc:
            log.info(
                "could not acknowledge messages on %s (%s); they will be redelivered",
                self.queue_name,
                exc,
            )
