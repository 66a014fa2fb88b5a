"""Durations as operators write them: ``90``, ``1.5``, ``90s``, ``15m``, ``1h``, ``2d``.

One parser for every duration an operator gives — command-line options
(``keys token --ttl 1h``), ``HWFLEET_*`` variables and TOML settings — so the
same spelling works everywhere. A bare number is seconds.
"""

from __future__ import annotations

import math
import re

#: Seconds per unit suffix.
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)
EXAMPLES = "seconds, or a number with s, m, h or d: 90s, 15m, 1h, 2d"


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``; ``ValueError`` (naming the accepted forms) for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration ({EXAMPLES})")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _DURATION.match(value)
        if not found:
            raise ValueError(f"{value!r} is not a duration ({EXAMPLES})")
        seconds = float(found.group(1)) * UNITS[(found.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration ({EXAMPLES})")
    return seconds
