"""The device's local admin password (seed 004 ``modify_password``), kept as a salted scrypt hash.

``<data-dir>/admin-password.json`` (mode 0600) holds the scrypt parameters, a
random 16-byte salt and the derived key, never the password. The parameters
travel with the hash so they can be raised later without invalidating stored
passwords. n=2**14, r=8 needs 16 MiB for the length of one derivation: the
interactive-login figure from the scrypt paper, and what an agent with a 30 MB
idle budget can afford for a moment.

A device without a stored password has an empty one: the first
``device.set_password`` gives ``old_password: ""``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from hwfleet.agent.localstate import LocalState, LocalStateError
from hwfleet.errors import TrustError

PASSWORD_DOC = "admin-password.json"  # noqa: S105 - a file name, not a secret
MIN_LENGTH = 8
#: scrypt hashes the whole input; a cap keeps one request from costing arbitrary CPU.
MAX_LENGTH = 1024
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


class PasswordError(TrustError, ValueError):
    """The new password is unacceptable (too short or too long)."""


class WrongPasswordError(PasswordError):
    """``old_password`` does not match the stored one."""


@dataclass(frozen=True, slots=True)
class ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def to_doc(self) -> dict[str, Any]:
        return {
            "scheme": "scrypt",
            "n": self.n,
            "r": self.r,
            "p": self.p,
            "salt": base64.b64encode(self.salt).decode("ascii"),
            "hash": base64.b64encode(self.key).decode("ascii"),
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ScryptHash:
        if doc.get("scheme") != "scrypt":
            raise ValueError(f"unknown password scheme {doc.get('scheme')!r}")
        return cls(
            n=int(doc["n"]),
            r=int(doc["r"]),
            p=int(doc["p"]),
            salt=base64.b64decode(doc["salt"]),
            key=base64.b64decode(doc["hash"]),
        )


#: Compared against when no password is set: no input derives to all-zero bytes.
_UNSET = ScryptHash(_N, _R, _P, bytes(16), bytes(_DKLEN))


def derive(password: str, salt: bytes, n: int = _N, r: int = _R, p: int = _P) -> bytes:
    # maxmem a little above 128*n*r so the default OpenSSL limit (32 MiB) never bites.
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        dklen=_DKLEN,
        maxmem=128 * n * r * p + 1024 * 1024,
    )


def hash_password(password: str) -> ScryptHash:
    salt = secrets.token_bytes(16)
    return ScryptHash(_N, _R, _P, salt, derive(password, salt))


def verify(password: str, stored: ScryptHash) -> bool:
    candidate = derive(password, stored.salt, stored.n, stored.r, stored.p)
    return hmac.compare_digest(candidate, stored.key)


def check_new(password: str) -> None:
    """Reject a new password that is too short or too long (never echoing it)."""
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"new_password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"new_password must have at most {MAX_LENGTH} characters")


class AdminPassword:
    """Reads, checks and replaces the stored hash in a :class:`LocalState`."""

    def __init__(self, state: LocalState) -> None:
        self._state = state

    def _stored(self) -> ScryptHash | None:
        doc = self._state.read(PASSWORD_DOC)
        if doc is None:
            return None
        try:
            return ScryptHash.from_doc(doc)
        except (KeyError, ValueError, TypeError) as exc:
            raise LocalStateError(
                f"the stored admin password is damaged ({exc}); remove {PASSWORD_DOC} "
                "from the agent's data dir to reset it"
            ) from None

    async def check(self, password: str) -> bool:
        """Whether ``password`` is the device password (the admin listener's first contact).

        A device without a password admits nobody by password. It still derives
        once, against a throwaway hash, so the answer takes the same time either
        way and does not tell a guesser whether a password is set.
        """
        if len(password) > MAX_LENGTH:
            return False
        stored = self._stored()
        if stored is None or not password:
            await asyncio.to_thread(verify, password, _UNSET)
            return False
        return await asyncio.to_thread(verify, password, stored)

    async def change(self, old: str, new: str) -> None:
        """Replace the password if ``old`` matches (else :class:`WrongPasswordError`).

        The hashing runs in a thread: ~50 ms of scrypt must not stall the agent's
        heartbeats and other commands.
        """
        check_new(new)
        stored = self._stored()
        if stored is None:
            if old:
                raise WrongPasswordError("old_password is wrong (this device has no password yet)")
        elif not await asyncio.to_thread(verify, old, stored):
            raise WrongPasswordError("old_password is wrong")
        fresh = await asyncio.to_thread(hash_password, new)
        self._state.write(PASSWORD_DOC, fresh.to_doc())
