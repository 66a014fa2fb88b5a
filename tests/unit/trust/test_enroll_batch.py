"""Enrollments decided in batches keep the rules: one row per key, the same certificate again."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from hwfleet.protocol.errors import ErrorCode, MethodError
from hwfleet.store import Store
from hwfleet.trust import EnrollmentService, EnrollParams, EnrollReply
from hwfleet.trust.enroll_batch import busy_message, retry_after

PASSWORD = "correct horse battery staple"


async def key_rows(store: Store) -> int:
    async with store.tx(readonly=True) as tx:
        return len(await tx.keys.list())


async def test_a_storm_batch_accepts_each_new_device_once(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str]
) -> None:
    requests = [
        (EnrollParams(uuid=str(uuid.uuid4()), csr=new_csr(), password=PASSWORD), f"10.0.0.{i}")
        for i in range(1, 41)
    ]
    replies = await service.enroll_many(requests)
    assert all(isinstance(r, EnrollReply) and r.state == "accepted" for r in replies)
    assert await key_rows(store) == 40
    # Sent again (an agent that timed out): the same certificates, no new row.
    again = await service.enroll_many(requests)
    assert [r.cert for r in again] == [r.cert for r in replies]  # type: ignore[union-attr]
    assert await key_rows(store) == 40


async def test_the_same_key_twice_in_one_batch_gets_one_row_and_one_certificate(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str]
) -> None:
    params = EnrollParams(uuid=str(uuid.uuid4()), csr=new_csr(), password=PASSWORD)
    first, second = await service.enroll_many([(params, "10.0.0.1"), (params, "10.0.0.1")])
    assert isinstance(first, EnrollReply) and isinstance(second, EnrollReply)
    assert first.cert == second.cert and first.key_id == second.key_id
    assert await key_rows(store) == 1


async def test_a_batch_still_refuses_what_the_rules_refuse(
    service: EnrollmentService, store: Store, new_csr: Callable[..., str]
) -> None:
    device = str(uuid.uuid4())
    good = EnrollParams(uuid=device, csr=new_csr(), password=PASSWORD)
    wrong = EnrollParams(uuid=str(uuid.uuid4()), csr=new_csr(), password="wrong")
    garbage = EnrollParams(uuid=str(uuid.uuid4()), csr="not a csr", password=PASSWORD)
    thief = EnrollParams(uuid=device, csr=new_csr(), password=PASSWORD)
    replies = await service.enroll_many(
        [(good, "10.0.0.1"), (wrong, "10.0.0.2"), (garbage, "10.0.0.3"), (thief, "10.0.0.4")]
    )
    assert isinstance(replies[0], EnrollReply) and replies[0].state == "accepted"
    for refused, code in zip(
        replies[1:], (ErrorCode.UNAUTHORIZED, ErrorCode.BAD_PARAMS, ErrorCode.REFUSED), strict=True
    ):
        assert isinstance(refused, MethodError) and refused.code == code, refused
    async with store.tx(readonly=True) as tx:
        states = sorted(k.state for k in await tx.keys.list())
    assert states == ["accepted", "denied"]  # the second key of the device is on record


def test_busy_message_carries_its_retry_after() -> None:
    assert retry_after(busy_message(2.2)) == 3.0
    assert retry_after("enroll: wrong password (unauthorized)") is None
