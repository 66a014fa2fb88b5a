"""Single-use enrollment tokens: generated here, stored only as a hash.

A token is 32 random bytes (URL-safe base64) behind an ``hwfe_`` prefix, so
secret scanners and operators recognise it. The store keeps the SHA-256 of
the token — enough for a value with 256 bits of entropy, where a slow
password hash would only cost time — and ``tx.tokens.consume`` marks it used
in the same transaction that enrolls the key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

PREFIX = "hwfe_"
MIN_TTL = 1.0
MAX_TTL = 30 * 24 * 3600.0
DEFAULT_TTL = 3600.0
#: Longer input is certainly not a token; refuse it before hashing.
MAX_TOKEN_LENGTH = 128


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the store keeps: ``sha256:`` + hex digest of the token."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def expiry(ttl: float, now: dt.datetime) -> dt.datetime:
    """``now + ttl``, after checking the ttl is within 1 s … 30 days."""
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise ValueError(
            f"token ttl must be between {MIN_TTL:g} and {MAX_TTL:g} seconds, not {ttl:g}"
        )
    return now + dt.timedelta(seconds=ttl)
