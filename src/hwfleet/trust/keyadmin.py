"""The operator's side of agent keys: list, accept, reject, delete, tokens, session checks.

Key states (DESIGN §6, after Salt): ``pending`` waits for an operator;
``accepted`` may connect; ``rejected`` was refused by an operator; ``denied``
was refused automatically (a second key for a uuid that already has one).
Rejecting or deleting an accepted key calls ``on_revoke`` so the gateway drops
that device's session at once, and every decision is an event.

A pending key row keeps the device's CSR in the ``public_key_pem`` column (the
CSR carries the public key, and ``accept`` needs the whole CSR to sign it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hwfleet.errors import TrustError
from hwfleet.trust import fingerprints, tokens
from hwfleet.trust.messages import EventSink, IssuedToken, RevokeHook, key_view
from hwfleet.trust.session_checks import SessionChecks

if TYPE_CHECKING:
    from hwfleet.store import EventRecord, KeyRecord, Store, Tx
    from hwfleet.trust.ca import CertificateAuthority
    from hwfleet.trust.tls import PeerIdentity

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
#: An event to publish once its transaction has committed: (routing_key, payload).
PendingEvent = tuple[str, dict[str, Any], "EventRecord"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class KeyNotFoundError(TrustError, LookupError):
    """No key has that id (or fingerprint)."""


class KeyConflictError(TrustError, ValueError):
    """The operation contradicts another key's state; the message says what to do."""


class KeyAdmin:
    """Key decisions and session checks; :class:`EnrollmentService` adds ``enroll``."""

    def __init__(
        self,
        store: Store,
        ca: CertificateAuthority,
        *,
        events: EventSink | None = None,
        on_revoke: RevokeHook | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.ca = ca
        self.events = events
        #: Set by the gateway: drop a device's session when its key stops being accepted.
        self.on_revoke = on_revoke
        self._clock = clock
        # One decision at a time in this process: two enrollments for one uuid
        # cannot both see "no accepted key yet" and both win.
        self._lock = asyncio.Lock()
        #: Connect-time key checks, batched and remembered; every reject/delete forgets.
        self.session_checks = SessionChecks(store)

    # -- sessions ------------------------------------------------------------------------
    async def check_session(self, identity: PeerIdentity) -> bool:
        """True only while the certificate's key is accepted for the uuid it names."""
        return await self.session_checks.accepted(identity.fingerprint, identity.device_uuid)

    # -- tokens --------------------------------------------------------------------------
    async def issue_token(self, ttl: float = tokens.DEFAULT_TTL) -> IssuedToken:
        """A single-use enrollment token valid for ``ttl`` seconds; only its hash is stored."""
        now = self._clock()
        expires_at = tokens.expiry(ttl, now)
        token = tokens.new_token()
        async with self.store.tx() as tx:
            await tx.tokens.add(tokens.token_hash(token), expires_at=expires_at, at=now)
        log.info("enrollment token issued, valid until %s", expires_at.isoformat())
        return IssuedToken(token=token, expires_at=expires_at)

    async def create_token(self, ttl: float = tokens.DEFAULT_TTL) -> str:
        return (await self.issue_token(ttl)).token

    # -- operator decisions --------------------------------------------------------------
    async def list_keys(self) -> list[dict[str, Any]]:
        async with self.store.tx(readonly=True) as tx:
            return [key_view(record) for record in await tx.keys.list()]

    async def _find(self, tx: Tx, key_id: str) -> KeyRecord:
        record = await tx.keys.get(key_id.strip().lower())
        if record is None:
            try:
                record = await tx.keys.by_fingerprint(fingerprints.parse(key_id))
            except fingerprints.BadFingerprintError:
                record = None
        if record is None:
            raise KeyNotFoundError(f"no key {key_id.strip()[:80]!r} (see `hwfleet keys list`)")
        return record

    async def accept(self, key_id: str) -> dict[str, Any]:
        """Sign the key's CSR and mark it accepted (pending, rejected or denied keys)."""
        async with self._lock:
            async with self.store.tx() as tx:
                record = await self._find(tx, key_id)
                if record.state == "accepted":
                    return key_view(record)
                for other in await tx.keys.for_device(record.device_uuid):
                    if other.id != record.id and other.state == "accepted":
                        raise KeyConflictError(
                            f"device {record.device_uuid} already has accepted key {other.id}: "
                            f"delete it first (hwfleet keys delete {other.id})"
                        )
                cert = self.ca.sign_csr(record.public_key_pem, record.device_uuid)
                now = self._clock()
                updated = await tx.keys.set_state(
                    record.id, "accepted", reason="accepted by an operator", cert_pem=cert, at=now
                )
                assert updated is not None
                event = await self._event(tx, "accepted", updated, now)
            await self._publish([event])
        log.info("key %s of device %s accepted by an operator", updated.id, updated.device_uuid)
        return key_view(updated)

    async def reject(self, key_id: str) -> dict[str, Any]:
        """Refuse the key from now on; a connected device holding it is dropped."""
        async with self._lock:
            async with self.store.tx() as tx:
                record = await self._find(tx, key_id)
                now = self._clock()
                updated = await tx.keys.set_state(
                    record.id, "rejected", reason="rejected by an operator", at=now
                )
                self.session_checks.forget(record.fingerprint)
                assert updated is not None
                event = await self._event(tx, "rejected", updated, now)
            # Again after the commit: a check that began in between read the old row.
            self.session_checks.forget(record.fingerprint)
            await self._publish([event])
        log.info("key %s of device %s rejected by an operator", record.id, record.device_uuid)
        if record.state == "accepted":
            await self._revoke(record)
        return key_view(updated)

    async def delete(self, key_id: str) -> dict[str, Any]:
        """Forget the key; the device must enroll again (password or token) to come back."""
        async with self._lock:
            async with self.store.tx() as tx:
                record = await self._find(tx, key_id)
                await tx.keys.delete(record.id)
                self.session_checks.forget(record.fingerprint)
                event = await self._event(tx, "deleted", record, self._clock())
            self.session_checks.forget(record.fingerprint)  # again, after the commit
            await self._publish([event])
        log.info("key %s of device %s deleted by an operator", record.id, record.device_uuid)
        if record.state == "accepted":
            await self._revoke(record)
        return key_view(record)

    # -- plumbing ------------------------------------------------------------------------
    async def _event(
        self,
        tx: Tx,
        action: str,
        record: KeyRecord,
        at: dt.datetime,
        **extra: Any,
    ) -> PendingEvent:
        """Write ``enrollment.<action>.<uuid>`` in this transaction; publish after commit."""
        routing_key = f"enrollment.{action}.{record.device_uuid}"
        payload = {
            "uuid": record.device_uuid,
            "key_id": record.id,
            "fingerprint": record.fingerprint,
            "state": record.state,
            "reason": record.reason,
            **extra,
        }
        row = await tx.events.add(routing_key, payload, device_uuid=record.device_uuid, at=at)
        return routing_key, payload, row

    async def _publish(self, events: list[PendingEvent]) -> None:
        if self.events is None:
            return
        for routing_key, payload, row in events:
            try:
                result = self.events(routing_key, payload, row)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # The row is committed; a failed notification must not undo the decision.
                log.exception("publishing event %s failed", routing_key)

    async def _revoke(self, record: KeyRecord) -> None:
        if self.on_revoke is None:
            return
        try:
            result = self.on_revoke(record.device_uuid, record.fingerprint)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("dropping the session of device %s failed", record.device_uuid)
