"""AckBatcher: which ack frames go out for which settled deliveries."""

from __future__ import annotations

from typing import cast

import aiormq.abc
import aiormq.exceptions

from hwfleet.bus.amqp_acks import AckBatcher


class FakeChannel:
    """Records the acks it is asked to send (the frames the broker would see)."""

    def __init__(self, *, broken: bool = False) -> None:
        self.acks: list[tuple[int, bool]] = []
        self.broken = broken

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        if self.broken:
            raise aiormq.exceptions.ChannelInvalidStateError("closed")
        self.acks.append((delivery_tag, multiple))


def channel(fake: FakeChannel) -> aiormq.abc.AbstractChannel:
    return cast(aiormq.abc.AbstractChannel, fake)


async def test_handlers_finishing_together_are_acked_with_one_frame() -> None:
    fake = FakeChannel()
    acks = AckBatcher("q")
    for tag in range(1, 6):
        acks.delivered(channel(fake), tag)
    for tag in (3, 1, 5, 2, 4):  # order of finishing does not matter within an iteration
        acks.ack(channel(fake), tag)
    await acks.drain()
    assert fake.acks == [(5, True)]


async def test_an_unsettled_delivery_is_never_covered() -> None:
    fake = FakeChannel()
    acks = AckBatcher("q")
    for tag in range(1, 7):
        acks.delivered(channel(fake), tag)
    for tag in (1, 2, 4, 6):
        acks.ack(channel(fake), tag)
    await acks.drain()
    # 1-2 as one frame; 3 and 5 are still running, so 4 and 6 go one by one.
    assert fake.acks == [(2, True), (4, False), (6, False)]
    acks.ack(channel(fake), 3)
    acks.forget(channel(fake), 5)  # nacked by the consumer itself
    await acks.drain()
    assert fake.acks[3:] == [(3, False)]


async def test_a_delivery_never_settled_stops_the_run_for_good() -> None:
    fake = FakeChannel()
    acks = AckBatcher("q")
    for tag in (1, 2, 3):
        acks.delivered(channel(fake), tag)  # 1 is dropped unsettled (consumer cancelled)
    acks.ack(channel(fake), 2)
    acks.ack(channel(fake), 3)
    await acks.drain()
    assert fake.acks == [(2, False), (3, False)]


async def test_a_new_channel_starts_afresh_and_old_tags_are_ignored() -> None:
    old, new = FakeChannel(), FakeChannel()
    acks = AckBatcher("q")
    acks.delivered(channel(old), 1)
    acks.delivered(channel(old), 2)
    acks.delivered(channel(new), 1)  # after a reconnect tags start again
    acks.ack(channel(old), 2)  # the broker redelivers it on the new channel anyway
    acks.ack(channel(new), 1)
    await acks.drain()
    assert old.acks == [] and new.acks == [(1, False)]


async def test_a_lost_channel_costs_a_log_line_not_an_error() -> None:
    fake = FakeChannel(broken=True)
    acks = AckBatcher("q")
    acks.delivered(channel(fake), 1)
    acks.ack(channel(fake), 1)
    await acks.drain()
    assert acks.idle
