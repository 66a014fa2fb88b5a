"""The MDP datagram: one JSON object, version "2" authenticated by HMAC-SHA256 (DESIGN §13).

The MAC covers the object encoded as compact JSON with sorted keys, ASCII-escaped
(``json.dumps(obj, sort_keys=True, separators=(",", ":"))``) and without ``mac``:
any client with ``hashlib``/``hmac``/``json`` can build and check it. Version "1.0"
is the seed's form with the key inside the message; only :mod:`.endpoint` decides
whether it is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

V2 = "2"
LEGACY = "1.0"
#: Largest datagram either side sends or accepts (DESIGN §13).
MAX_DATAGRAM = 8 * 1024
#: Requests (and reports) whose ``ts`` is further than this from our clock are dropped.
WINDOW = 30.0
MIN_NONCE = 16


class WireError(ValueError):
    """A datagram that is not a well-formed MDP object; the reason is for counters and logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def canonical(obj: dict[str, Any]) -> bytes:
    """The bytes the MAC covers: ``obj`` without ``mac``, compact, sorted keys."""
    body = {k: v for k, v in obj.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("ascii")


def mac_of(key: bytes, obj: dict[str, Any]) -> str:
    return hmac.new(key, canonical(obj), hashlib.sha256).hexdigest()


def sign(key: bytes, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with ``ts`` and ``nonce`` filled in when missing, and its ``mac``."""
    signed = dict(obj)
    signed.setdefault("version", V2)
    signed.setdefault("ts", int(time.time()))
    signed.setdefault("nonce", secrets.token_hex(16))
    signed["mac"] = mac_of(key, signed)
    return signed


def verify(key: bytes, obj: dict[str, Any]) -> bool:
    given = obj.get("mac")
    if not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("ascii", "replace"), mac_of(key, obj).encode("ascii"))


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("ascii")


def decode(data: bytes) -> dict[str, Any]:
    """One datagram as a JSON object, or :class:`WireError` (oversized, not JSON, not an object)."""
    if len(data) > MAX_DATAGRAM:
        raise WireError("oversized")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise WireError("malformed") from None
    if not isinstance(obj, dict):
        raise WireError("malformed")
    return obj


def check_fresh(obj: dict[str, Any], now: float, window: float = WINDOW) -> tuple[int, str]:
    """``(ts, nonce)`` of a v2 object, or :class:`WireError` ``malformed`` / ``stale``."""
    ts, nonce = obj.get("ts"), obj.get("nonce")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise WireError("malformed")
    if not isinstance(nonce, str) or not MIN_NONCE <= len(nonce) <= 128:
        raise WireError("malformed")
    if any(c not in "0123456789abcdefABCDEF" for c in nonce):
        raise WireError("malformed")
    if abs(now - ts) > window:
        raise WireError("stale")
    return ts, nonce


def request(
    key: bytes,
    operations: list[dict[str, Any]],
    cluster_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A signed v2 request."""
    body: dict[str, Any] = {"version": V2, "operations": operations}
    if cluster_info is not None:
        body["cluster_info"] = cluster_info
    return sign(key, body)
