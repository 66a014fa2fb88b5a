"""Fitting a reply into datagrams of at most 8 KiB, never truncating anything silently.

The operations' entries are spread over as many datagrams as needed, each a complete
reply carrying ``part`` (1-based) and ``parts`` and its own MAC; an entry that alone
does not fit is replaced by a failure saying how large it was and why it was refused.
"""

from __future__ import annotations

from typing import Any

from hwfleet.mdp import wire


def _encoded(base: dict[str, Any], entries: list[dict[str, Any]], key: bytes | None,
             part: int = 1, parts: int = 1) -> bytes:  # fmt: skip
    body = {**base, "operations": entries}
    if parts > 1:
        body.update(part=part, parts=parts)
    return wire.encode(wire.sign(key, body) if key is not None else body)


def _refusal(entry: dict[str, Any], size: int) -> dict[str, Any]:
    return {
        "name": entry["name"],
        "status": False,
        "error": f"result is {size} bytes, more than fits in one {wire.MAX_DATAGRAM}-byte "
        "datagram; ask for less (fewer lines, one device)",
    }


def pack_reply(
    base: dict[str, Any], entries: list[dict[str, Any]], key: bytes | None
) -> list[bytes]:
    """The datagrams of one reply (``key`` None: the unsigned legacy form)."""
    whole = _encoded(base, entries, key)
    if len(whole) <= wire.MAX_DATAGRAM:
        return [whole]
    # Room for "part"/"parts" with up to 3 digits each.
    fitted: list[dict[str, Any]] = []
    for entry in entries:
        size = len(_encoded(base, [entry], key, 999, 999))
        if size > wire.MAX_DATAGRAM:
            entry = _refusal(entry, size)
            base = {**base, "status": False}
        fitted.append(entry)
    groups: list[list[dict[str, Any]]] = [[]]
    for entry in fitted:
        trial = [*groups[-1], entry]
        if groups[-1] and len(_encoded(base, trial, key, 999, 999)) > wire.MAX_DATAGRAM:
            groups.append([entry])
        else:
            groups[-1] = trial
    if len(groups) == 1:
        return [_encoded(base, groups[0], key)]
    return [_encoded(base, g, key, i, len(groups)) for i, g in enumerate(groups, 1)]
