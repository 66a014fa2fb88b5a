"""MAC addresses: one rule for reading every spelling, one form for storing and comparing.

The rule: case does not matter; the 12 hex digits of a 48-bit address come bare
(``e0187d2eca68``) or in groups of two or four joined by one separator used throughout,
``:``, ``-`` or ``.`` (``E0-18-7D-2E-CA-68``, ``e018.7d2e.ca68``); surrounding blanks are
ignored. The result is always the lower-case colon form sysfs reports
(``e0:18:7d:2e:ca:68``). Anything else is a :class:`ValueError` naming the text.
"""

from __future__ import annotations

import re

_CANONICAL = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_GROUPED = re.compile(
    r"[0-9a-f]{12}"
    r"|[0-9a-f]{2}([:.-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}"
    r"|[0-9a-f]{4}([:.-])[0-9a-f]{4}\2[0-9a-f]{4}"
)
#: How much of a wrong value an error message repeats.
SHOWN = 40


def normalize_mac(text: object) -> str:
    """``aa:bb:cc:dd:ee:ff`` for any spelling the rule allows; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"MAC address must be a string, not {type(text).__name__}")
    value = text.strip().lower()
    if _CANONICAL.fullmatch(value):
        return value  # how nearly every device and MES spells it: nothing to rebuild
    if not _GROUPED.fullmatch(value):
        shown = text if len(text) <= SHOWN else text[:SHOWN] + "…"
        raise ValueError(
            f"{shown!r} is not a MAC address (expected 12 hex digits like e0:18:7d:2e:ca:68, "
            "e0-18-7d-2e-ca-68, e018.7d2e.ca68 or e0187d2eca68)"
        )
    digits = re.sub(r"[:.-]", "", value)
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def is_mac(text: str) -> bool:
    """Whether :func:`normalize_mac` accepts ``text``."""
    try:
        normalize_mac(text)
    except ValueError:
        return False
    return True
