"""Store records → API bodies (ISO timestamps, plain JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


def to_json(record: msgspec.Struct) -> dict[str, Any]:
    """A msgspec record as a JSON-ready dict, datetimes as ISO 8601 strings."""
    built: dict[str, Any] = msgspec.to_builtins(record, builtin_types=(datetime,))
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in built.items()}
