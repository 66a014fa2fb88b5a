"""Enrollment: password (or single-use token) the first time, then only the key (DESIGN §6).

Rules, in the order they are applied to an ``enroll`` request:

1. A source that has used up its failed attempts (rate limiter) is refused
   before anything else is looked at: no password is compared.
2. The CSR must verify and use an accepted key type (else ``bad_params``).
3. A key the store already knows: accepted for this uuid → the same
   certificate again (idempotent); rejected or denied → refused; registered to
   another uuid → refused; pending → goes on to the secret check.
4. A uuid that already has an accepted key and now shows another key → without
   the right password or a valid token the request is refused like a wrong
   password and nothing is written; with one, the new key is recorded
   ``denied``, the event ``enrollment.denied.<uuid>`` is written and published,
   and the request is refused. At most :data:`MAX_DENIED_PER_DEVICE` denied
   keys are recorded per uuid; later attempts are only logged.
5. A right password (constant-time compare), within the password caps
   (:mod:`hwfleet.trust.enroll_limits`), or an unexpired, unused token
   (consumed in the same transaction) → the key is accepted and signed.
6. Otherwise the failure is charged to the source and the request is refused —
   or, in manual-approval mode, recorded ``pending`` for ``hwfleet keys accept``.

Refusals raise ``MethodError`` whose message names the rule, never a secret.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwfleet.protocol.errors import ErrorCode, MethodError
from hwfleet.store.records import KeyRecord
from hwfleet.trust import fingerprints, tokens
from hwfleet.trust.compare import secret_equals
from hwfleet.trust.csr import CsrError, CsrInfo, canonical_uuid, parse_csr
from hwfleet.trust.enroll_limits import (
    PasswordCaps,
    WindowCounter,
    fleet_cap_message,
    source_cap_message,
)
from hwfleet.trust.keyadmin import Clock, KeyAdmin, PendingEvent, utcnow
from hwfleet.trust.messages import EnrollParams, EnrollReply, EventSink, RevokeHook
from hwfleet.trust.ratelimit import RateLimiter

if TYPE_CHECKING:
    from hwfleet.store import Store, Tx
    from hwfleet.trust.ca import CertificateAuthority

log = logging.getLogger(__name__)

#: One request of a batch: its index, canonical uuid, verified CSR, params and source.
_Prepared = tuple[int, str, CsrInfo, EnrollParams, str]

#: Denied keys recorded per device uuid; beyond this a theft attempt is logged, not stored.
MAX_DENIED_PER_DEVICE = 5


@dataclass(slots=True)
class _Outcome:
    """What one enrollment decided; built inside the transaction, acted on after commit."""

    reply: EnrollReply | None = None
    refusal: MethodError | None = None
    events: list[PendingEvent] | None = None
    charge: bool = False
    #: Accepted with the password: counts against the source's password cap.
    by_password: bool = False


class EnrollmentService(KeyAdmin):
    """Signs agents' CSRs under the enrollment rules; also the operator's key admin."""

    def __init__(
        self,
        store: Store,
        ca: CertificateAuthority,
        *,
        password: str,
        limiter: RateLimiter | None = None,
        events: EventSink | None = None,
        on_revoke: RevokeHook | None = None,
        manual_approval: bool = False,
        password_caps: PasswordCaps | None = None,
        clock: Clock = utcnow,
    ) -> None:
        super().__init__(store, ca, events=events, on_revoke=on_revoke, clock=clock)
        # An empty password disables password enrollment (tokens still work).
        self._password = password
        self.limiter = limiter if limiter is not None else RateLimiter()
        self.manual_approval = manual_approval
        self.password_caps = password_caps or PasswordCaps()
        #: Password enrollments per source in the sliding window (tests swap in a clock).
        self.password_counter = WindowCounter(
            self.password_caps.per_source, self.password_caps.window
        )

    def hello(self) -> dict[str, Any]:
        """The controller CA, for an agent to verify *before* it sends a secret."""
        return {"ca": self.ca.ca_pem, "ca_fingerprint": self.ca.fingerprint()}

    def _accepted(self, record: KeyRecord, cert: str) -> EnrollReply:
        return EnrollReply(
            state="accepted",
            key_id=record.id,
            cert=cert,
            ca=self.ca.ca_pem,
            ca_fingerprint=self.ca.fingerprint(),
        )

    async def enroll(self, params: EnrollParams, *, source_ip: str) -> EnrollReply:
        """Apply the enrollment rules (module docstring) to one request."""
        try:
            uuid = canonical_uuid(params.uuid)
        except ValueError as exc:
            raise MethodError(f"enroll: {exc}", ErrorCode.BAD_PARAMS) from None
        self._refuse_if_limited(source_ip, uuid)
        try:
            info = parse_csr(params.csr)
        except CsrError as exc:
            self.limiter.failure(source_ip)  # verifying signatures costs CPU: garbage pays too
            raise MethodError(f"enroll: {exc}", ErrorCode.BAD_PARAMS) from None
        async with self._lock:
            # Checked again, and charged, under the lock: concurrent requests from one
            # source would otherwise all pass the check above before the first failure
            # is charged, and each would get its secret compared.
            self._refuse_if_limited(source_ip, uuid)
            async with self.store.tx() as tx:
                outcome = await self._decide(tx, uuid, info, params, source_ip)
            if outcome.charge:
                self.limiter.failure(source_ip)
            if outcome.by_password:
                self.password_counter.add(source_ip)
            await self._publish(outcome.events or [])
        result = self._report(uuid, info, source_ip, outcome)
        if isinstance(result, MethodError):
            raise result
        return result

    async def enroll_many(
        self, requests: list[tuple[EnrollParams, str]]
    ) -> list[EnrollReply | MethodError]:
        """Decide many ``(params, source_ip)`` requests in one transaction (issue 18).

        The same rules as :meth:`enroll`, request by request in order; the common case
        of a storm (a new device, a new key, the right password, within the caps) is
        written with one statement for all of them instead of a handful each.
        """
        results: list[EnrollReply | MethodError | None] = [None] * len(requests)
        checked: list[tuple[int, str, EnrollParams, str]] = []
        for index, (params, source_ip) in enumerate(requests):
            try:
                uuid = canonical_uuid(params.uuid)
            except ValueError as exc:
                results[index] = MethodError(f"enroll: {exc}", ErrorCode.BAD_PARAMS)
                continue
            if self.limiter.limited(source_ip):
                results[index] = self._limited(source_ip, uuid)
                continue
            checked.append((index, uuid, params, source_ip))
        # Verifying signatures is the CPU-heavy part: off the event loop.
        parsed = await asyncio.to_thread(_parse_all, [p.csr for _, _, p, _ in checked])
        prepared: list[_Prepared] = []
        for (index, uuid, params, source_ip), info in zip(checked, parsed, strict=True):
            if isinstance(info, CsrError):
                self.limiter.failure(source_ip)
                results[index] = MethodError(f"enroll: {info}", ErrorCode.BAD_PARAMS)
            else:
                prepared.append((index, uuid, info, params, source_ip))
        async with self._lock:
            events: list[PendingEvent] = []
            async with self.store.tx() as tx:
                fast, slow = await self._split(tx, prepared)
                events += await self._accept_new(tx, fast, results)
                outcomes = []
                for index, uuid, info, params, source_ip in slow:
                    if self.limiter.limited(source_ip):
                        results[index] = self._limited(source_ip, uuid)
                        continue
                    outcome = await self._decide(tx, uuid, info, params, source_ip)
                    if outcome.charge:
                        self.limiter.failure(source_ip)
                    if outcome.by_password:
                        self.password_counter.add(source_ip)
                    outcomes.append((index, uuid, info, source_ip, outcome))
                    events += outcome.events or []
            await self._publish(events)
        for index, uuid, info, source_ip, outcome in outcomes:
            results[index] = self._report(uuid, info, source_ip, outcome)
        return [r if r is not None else MethodError("enroll: not decided") for r in results]

    async def _split(
        self, tx: Tx, prepared: list[_Prepared]
    ) -> tuple[list[_Prepared], list[_Prepared]]:
        """New device, new key, right password, within the caps → fast; the rest → one by one."""
        known = await tx.keys.matching(
            [item[2].fingerprint for item in prepared], [item[1] for item in prepared]
        )
        taken = {k.fingerprint for k in known} | {k.device_uuid for k in known}
        caps = self.password_caps
        room: int | None = None
        if caps.fleet_limit:
            room = caps.fleet_limit - await tx.keys.count_devices("accepted")
        fast: list[_Prepared] = []
        slow: list[_Prepared] = []
        for item in prepared:
            _, uuid, info, params, source_ip = item
            simple = (
                uuid not in taken
                and info.fingerprint not in taken
                and self._password_matches(params)
                and not self.limiter.limited(source_ip)
                and self.password_counter.retry_after(source_ip) <= 0
                and (room is None or room > 0)
            )
            # A second request of the batch for the same device or key sees the first's row.
            taken |= {uuid, info.fingerprint}
            if simple:
                self.password_counter.add(source_ip)
                room = None if room is None else room - 1
                fast.append(item)
            else:
                slow.append(item)
        return fast, slow

    async def _accept_new(
        self, tx: Tx, fast: list[_Prepared], results: list[EnrollReply | MethodError | None]
    ) -> list[PendingEvent]:
        if not fast:
            return []
        now = self._clock()
        certs = await asyncio.to_thread(
            lambda: [self.ca.sign_csr(info, uuid) for _, uuid, info, _, _ in fast]
        )
        records = [
            KeyRecord(
                id=fingerprints.key_id(info.fingerprint),
                device_uuid=uuid,
                fingerprint=info.fingerprint,
                public_key_pem=info.pem,
                cert_pem=cert,
                state="accepted",
                source="password",
                reason="enrolled with a password",
                created_at=now,
                decided_at=now,
            )
            for (_, uuid, info, _, _), cert in zip(fast, certs, strict=True)
        ]
        await tx.keys.add_many(records)
        items = [
            (
                f"enrollment.accepted.{r.device_uuid}",
                {
                    "uuid": r.device_uuid,
                    "key_id": r.id,
                    "fingerprint": r.fingerprint,
                    "state": r.state,
                    "reason": r.reason,
                    "source_ip": item[4],
                },
                r.device_uuid,
            )
            for r, item in zip(records, fast, strict=True)
        ]
        rows = {row.device_uuid: row for row in await tx.events.add_many(items, at=now)}
        for record, item in zip(records, fast, strict=True):
            results[item[0]] = self._accepted(record, record.cert_pem or "")
            log.info(
                "enrollment of device %s (key %s) from %s: accepted",
                record.device_uuid,
                record.id,
                item[4],
            )
        return [(key, payload, rows[uuid]) for key, payload, uuid in items]

    def _report(
        self, uuid: str, info: CsrInfo, source_ip: str, outcome: _Outcome
    ) -> EnrollReply | MethodError:
        if outcome.refusal is not None:
            log.warning(
                "enrollment of device %s (key %s) from %s refused: %s",
                uuid,
                fingerprints.key_id(info.fingerprint),
                source_ip,
                outcome.refusal.msg,
            )
            return outcome.refusal
        assert outcome.reply is not None
        log.info(
            "enrollment of device %s (key %s) from %s: %s%s",
            uuid,
            outcome.reply.key_id,
            source_ip,
            outcome.reply.state,
            "" if outcome.events else " (again: the same key, the same certificate)",
        )
        return outcome.reply

    def _limited(self, source_ip: str, uuid: str) -> MethodError:
        try:
            self._refuse_if_limited(source_ip, uuid)
        except MethodError as exc:
            return exc
        return MethodError("rate-limited", ErrorCode.REFUSED)

    def _refuse_if_limited(self, source_ip: str, uuid: str) -> None:
        if self.limiter.limited(source_ip):
            wait = self.limiter.retry_after(source_ip)
            log.warning("enrollment from %s refused: rate-limited (device %s)", source_ip, uuid)
            raise MethodError(
                f"too many failed enrollment attempts from {source_ip}: retry in {wait:.0f} s",
                ErrorCode.REFUSED,
            )

    async def _decide(
        self, tx: Tx, uuid: str, info: CsrInfo, params: EnrollParams, source_ip: str
    ) -> _Outcome:
        now = self._clock()
        existing = await tx.keys.by_fingerprint(info.fingerprint)
        if existing is not None:
            if existing.device_uuid != uuid:
                return _Outcome(
                    refusal=MethodError(
                        "this key is registered to another device", ErrorCode.UNAUTHORIZED
                    ),
                    charge=True,
                )
            if existing.state == "accepted" and existing.cert_pem:
                return _Outcome(reply=self._accepted(existing, existing.cert_pem))
            if existing.state in ("rejected", "denied"):
                return _Outcome(
                    refusal=MethodError(
                        f"this key is {existing.state} (key {existing.id}); an operator must "
                        "delete it before it can enroll again",
                        ErrorCode.UNAUTHORIZED,
                    ),
                    charge=True,
                )
        keys = await tx.keys.for_device(uuid)
        for other in keys:
            if other.state == "accepted" and other.fingerprint != info.fingerprint:
                # The secret first: without it, asking costs the source and writes nothing.
                if not await self._proves_secret(tx, params, now):
                    return _Outcome(refusal=self._no_secret(params), charge=True)
                denied = sum(1 for key in keys if key.state == "denied")
                return await self._deny(tx, uuid, info, existing, other, source_ip, now, denied)

        source = await self._authenticate(tx, params, now)
        if source == "password":
            capped = await self._password_capped(tx, source_ip)
            if capped is not None:
                return _Outcome(refusal=capped)  # the right password: not a failure to charge
        if source is not None:
            cert = self.ca.sign_csr(info, uuid)
            record = existing or await self._add(tx, uuid, info, "pending", source, now)
            accepted = await tx.keys.set_state(
                record.id, "accepted", reason=f"enrolled with a {source}", cert_pem=cert, at=now
            )
            assert accepted is not None
            event = await self._event(tx, "accepted", accepted, now, source_ip=source_ip)
            return _Outcome(
                reply=self._accepted(accepted, cert),
                events=[event],
                by_password=source == "password",
            )

        if self.manual_approval:
            if existing is not None:  # already pending: waiting is not a new failure
                return _Outcome(reply=EnrollReply(state="pending", key_id=existing.id))
            record = await self._add(tx, uuid, info, "pending", "request", now)
            event = await self._event(tx, "pending", record, now, source_ip=source_ip)
            # Every new pending row costs the source a token, so rows cannot be flooded.
            return _Outcome(
                reply=EnrollReply(state="pending", key_id=record.id), events=[event], charge=True
            )
        return _Outcome(refusal=self._no_secret(params), charge=True)

    @staticmethod
    def _no_secret(params: EnrollParams) -> MethodError:
        message = (
            "enrollment refused: wrong enrollment password or invalid, used or expired token"
            if params.password or params.token
            else "enrollment needs the enrollment password (--enroll-password) or a token "
            "(hwfleet keys token)"
        )
        return MethodError(message, ErrorCode.UNAUTHORIZED)

    def _password_matches(self, params: EnrollParams) -> bool:
        return bool(params.password) and secret_equals(params.password or "", self._password)

    def _token_hash(self, params: EnrollParams) -> str | None:
        if params.token and len(params.token) <= tokens.MAX_TOKEN_LENGTH:
            return tokens.token_hash(params.token)
        return None

    async def _authenticate(self, tx: Tx, params: EnrollParams, now: Any) -> str | None:
        """``"password"`` or ``"token"`` when the request proves it may enroll, else None.

        A request carrying both uses the password; a token is consumed only when used.
        """
        if self._password_matches(params):
            return "password"
        token_hash = self._token_hash(params)
        if token_hash is not None and await tx.tokens.consume(token_hash, now):
            return "token"
        return None

    async def _proves_secret(self, tx: Tx, params: EnrollParams, now: Any) -> bool:
        """Like :meth:`_authenticate`, but spends nothing: for requests that will be refused."""
        if self._password_matches(params):
            return True
        token_hash = self._token_hash(params)
        return token_hash is not None and await tx.tokens.valid(token_hash, now)

    async def _password_capped(self, tx: Tx, source_ip: str) -> MethodError | None:
        """The refusal when a password enrollment would exceed a cap, else None."""
        caps = self.password_caps
        wait = self.password_counter.retry_after(source_ip)
        if wait > 0:
            return MethodError(source_cap_message(source_ip, caps, wait), ErrorCode.REFUSED)
        if caps.fleet_limit and await tx.keys.count_devices("accepted") >= caps.fleet_limit:
            return MethodError(fleet_cap_message(caps), ErrorCode.REFUSED)
        return None

    async def _add(
        self,
        tx: Tx,
        uuid: str,
        info: CsrInfo,
        state: str,
        source: str,
        now: Any,
        *,
        reason: str | None = None,
    ) -> KeyRecord:
        # A newer row for this fingerprint decides connect checks from now on.
        self.session_checks.forget(info.fingerprint)
        # The CSR goes in public_key_pem: it holds the public key, and accept() signs it.
        return await tx.keys.add(
            device_uuid=uuid,
            fingerprint=info.fingerprint,
            public_key_pem=info.pem,
            state=state,
            source=source,
            at=now,
            key_id=fingerprints.key_id(info.fingerprint),
            reason=reason,
        )

    async def _deny(
        self,
        tx: Tx,
        uuid: str,
        info: CsrInfo,
        existing: KeyRecord | None,
        accepted: KeyRecord,
        source_ip: str,
        now: Any,
        denied_before: int,
    ) -> _Outcome:
        reason = f"device already has accepted key {accepted.id}"
        refusal = MethodError(
            f"device {uuid} already has an accepted key ({accepted.id}); this key is denied. "
            f"An operator can delete the old key (hwfleet keys delete {accepted.id}) and "
            "accept this one",
            ErrorCode.REFUSED,
        )
        if existing is None and denied_before >= MAX_DENIED_PER_DEVICE:
            # Enough evidence is on record for this uuid: the log keeps the rest.
            return _Outcome(refusal=refusal, charge=True)
        if existing is None:
            denied = await self._add(tx, uuid, info, "denied", "request", now, reason=reason)
        else:
            updated = await tx.keys.set_state(existing.id, "denied", reason=reason, at=now)
            self.session_checks.forget(existing.fingerprint)
            assert updated is not None
            denied = updated
        event = await self._event(tx, "denied", denied, now, source_ip=source_ip)
        return _Outcome(refusal=refusal, events=[event], charge=True)


def _parse_all(pems: list[str]) -> list[CsrInfo | CsrError]:
    """Parse and verify CSRs (in a worker thread): each its info or its error."""
    parsed: list[CsrInfo | CsrError] = []
    for pem in pems:
        try:
            parsed.append(parse_csr(pem))
        except CsrError as exc:
            parsed.append(exc)
    return parsed
