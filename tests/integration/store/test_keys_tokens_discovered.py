"""tx.keys (agent keys and decisions), tx.tokens (single use), tx.discovered."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from hwfleet.store import Store

PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"


async def test_key_lifecycle(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        key = await tx.keys.add(
            device_uuid="u-1",
            fingerprint="SHA256:aa",
            public_key_pem=PEM,
            state="pending",
            source="csr",
            at=now,
        )
    assert len(key.id) == 12 and int(key.id, 16) >= 0
    assert (key.state, key.decided_at, key.cert_pem, key.reason) == ("pending", None, None, None)

    decided = now + timedelta(minutes=1)
    async with store.tx() as tx:
        accepted = await tx.keys.set_state(key.id, "accepted", cert_pem="CERT", at=decided)
        assert await tx.keys.set_state("missing", "accepted", at=decided) is None
    assert accepted is not None
    assert (accepted.state, accepted.cert_pem, accepted.decided_at) == ("accepted", "CERT", decided)

    async with store.tx() as tx:
        rejected = await tx.keys.set_state(
            key.id, "rejected", reason="operator said no", at=decided
        )
        assert await tx.keys.get(key.id) == rejected
        assert await tx.keys.by_fingerprint("SHA256:aa") == rejected
        assert await tx.keys.by_fingerprint("SHA256:zz") is None
    assert rejected is not None
    assert (rejected.reason, rejected.cert_pem) == ("operator said no", "CERT")

    async with store.tx() as tx:
        assert await tx.keys.delete(key.id) is True
        assert await tx.keys.delete(key.id) is False
        assert await tx.keys.list() == []


async def test_keys_per_device_and_duplicate_fingerprints(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        first = await tx.keys.add(
            device_uuid="u-1",
            fingerprint="fp",
            public_key_pem=PEM,
            state="accepted",
            source="password",
            at=now,
        )
        # The same key presented by another device is recorded again, denied.
        dup = await tx.keys.add(
            device_uuid="u-2",
            fingerprint="fp",
            public_key_pem=PEM,
            state="denied",
            source="csr",
            reason="duplicate key",
            at=now + timedelta(seconds=1),
            key_id="fixed-id",
        )
        other = await tx.keys.add(
            device_uuid="u-1",
            fingerprint="fp2",
            public_key_pem=PEM,
            state="pending",
            source="csr",
            at=now + timedelta(seconds=2),
        )
        assert first.decided_at == now  # decided at creation when not pending
        assert dup.id == "fixed-id"
        assert await tx.keys.by_fingerprint("fp") == dup  # the newest
        assert [k.id for k in await tx.keys.for_device("u-1")] == [first.id, other.id]
        assert [k.id for k in await tx.keys.list()] == [first.id, dup.id, other.id]
        with pytest.raises(ValueError, match="key state must be one of"):
            await tx.keys.set_state(first.id, "trusted", at=now)


async def test_tokens_are_single_use_and_expire(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        await tx.tokens.add("hash-a", expires_at=now + timedelta(hours=1), at=now)
        await tx.tokens.add("hash-b", expires_at=now + timedelta(minutes=1), at=now)
        await tx.tokens.add("hash-a", expires_at=now + timedelta(days=9), at=now)  # no-op
    async with store.tx() as tx:
        # Checking spends nothing; expired and unknown tokens are not valid.
        assert await tx.tokens.valid("hash-a", now + timedelta(minutes=5)) is True
        assert await tx.tokens.valid("hash-b", now + timedelta(minutes=1)) is False
        assert await tx.tokens.valid("never-issued", now) is False
        assert await tx.tokens.consume("hash-a", now + timedelta(minutes=5)) is True
        assert await tx.tokens.valid("hash-a", now + timedelta(minutes=5)) is False
        assert await tx.tokens.consume("hash-a", now + timedelta(minutes=6)) is False
        assert await tx.tokens.consume("hash-b", now + timedelta(minutes=1)) is False  # expired
        assert await tx.tokens.consume("never-issued", now) is False


async def test_count_devices_by_key_state(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        for n, (device, state) in enumerate(
            [("u-1", "accepted"), ("u-1", "denied"), ("u-2", "accepted"), ("u-3", "pending")]
        ):
            await tx.keys.add(
                device_uuid=device,
                fingerprint=f"fp-{n}",
                public_key_pem=PEM,
                state=state,
                source="csr",
                at=now,
            )
        assert await tx.keys.count_devices("accepted") == 2
        assert await tx.keys.count_devices("denied") == 1
        assert await tx.keys.count_devices("rejected") == 0
        with pytest.raises(ValueError, match="key state must be one of"):
            await tx.keys.count_devices("trusted")


async def test_discovered_upsert_and_list(store: Store, now: datetime) -> None:
    async with store.tx() as tx:
        await tx.discovered.upsert("u-b", {"name": "b"}, ipaddr="127.1.0.10", spoofed=False, at=now)
        await tx.discovered.upsert("u-a", {"name": "a"}, ipaddr="127.1.0.2", spoofed=False, at=now)
        updated = await tx.discovered.upsert(
            "u-b",
            {"name": "b2", "st_id": 16},
            ipaddr="127.1.0.11",
            spoofed=True,
            at=now + timedelta(seconds=3),
        )
        listed = await tx.discovered.list()
    assert updated.first_seen == now and updated.last_seen == now + timedelta(seconds=3)
    assert (updated.metadata, updated.ipaddr, updated.spoofed) == (
        {"name": "b2", "st_id": 16},
        "127.1.0.11",
        True,
    )
    assert [d.uuid for d in listed] == ["u-a", "u-b"]  # 127.1.0.2 before 127.1.0.11
