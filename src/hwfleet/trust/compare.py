"""Constant-time comparison of secrets.

Both sides are hashed first, so the comparison takes the same time whatever
the lengths are: ``hmac.compare_digest`` alone leaks whether the lengths differ.
"""

from __future__ import annotations

import hashlib
import hmac


def _digest(value: str | bytes) -> bytes:
    raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return hashlib.sha256(raw).digest()


def secret_equals(supplied: str | bytes, expected: str | bytes) -> bool:
    """True when ``supplied`` equals ``expected``; an empty ``expected`` never matches."""
    if not expected:
        return False
    return hmac.compare_digest(_digest(supplied), _digest(expected))
