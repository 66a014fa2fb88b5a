"""``since`` for history queries: a duration back from now (``1h``, ``90s``) or an ISO time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, status

from hwfleet.durations import parse_duration


def since_time(text: str | None, now: datetime | None = None) -> datetime | None:
    """The moment ``text`` names; 422 naming both accepted forms if it is neither."""
    if text is None or not text.strip():
        return None
    now = now or datetime.now(UTC)
    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"since: {text!r} is neither a duration (1h, 30m, 90s) nor an ISO 8601 time",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
