"""Alert rules over poller data: sensor thresholds and SEL entries.

An alert fires on a transition — a sensor entering alarm, a SEL entry not seen in the
previous poll — not on every poll while the condition lasts, so a hot CPU is one
alert, not one every minute. With no rules of its own a poller uses the defaults: a
sensor past its BMC-reported critical threshold or in critical health; a new SEL
entry of warning or critical severity.

Rule shapes (a poller's ``rules`` list):
``{"sensor": "CPU Temp", "above": 85}``, ``{"sensor": "*", "below": 5}``,
``{"sel": "critical"}`` (that severity or worse), ``{"sel_match": "regex"}``.
"""

from __future__ import annotations

import re
from typing import Any

_RANK = {"ok": 0, "unknown": 0, "warning": 1, "critical": 2}


def _sensor_alarms(data: Any, rules: list[dict[str, Any]]) -> dict[str, str]:
    """``{sensor name: reason}`` for every sensor in alarm."""
    out: dict[str, str] = {}
    if not isinstance(data, list):
        return out
    own = [r for r in rules if "sensor" in r]
    for s in data:
        if not isinstance(s, dict):
            continue
        name, value = str(s.get("name")), s.get("value")
        number = value if isinstance(value, int | float) else None
        if not own:
            upper, lower = s.get("upper_critical"), s.get("lower_critical")
            if number is not None and upper is not None and number >= upper:
                out[name] = f"{name} is {number:g} {s.get('units', '')}, at or above {upper:g}"
            elif number is not None and lower is not None and number <= lower:
                out[name] = f"{name} is {number:g} {s.get('units', '')}, at or below {lower:g}"
            elif s.get("health") == "critical":
                out[name] = f"{name} reports critical health"
            continue
        for r in own:
            if r["sensor"] not in ("*", name) or number is None:
                continue
            if "above" in r and number > float(r["above"]):
                out[name] = f"{name} is {number:g}, above {r['above']}"
            elif "below" in r and number < float(r["below"]):
                out[name] = f"{name} is {number:g}, below {r['below']}"
    return out


def _sel_matches(entry: dict[str, Any], rules: list[dict[str, Any]]) -> bool:
    own = [r for r in rules if "sel" in r or "sel_match" in r]
    severity = _RANK.get(str(entry.get("severity")), 0)
    if not own:
        return severity >= 1
    for r in own:
        if "sel" in r and severity >= _RANK.get(str(r["sel"]), 2):
            return True
        if "sel_match" in r and re.search(str(r["sel_match"]), str(entry.get("message", ""))):
            return True
    return False


def evaluate(
    kind: str, previous: Any, current: Any, rules: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The alerts ``current`` raises given ``previous`` (the last successful poll's data)."""
    if kind == "sdr":
        before = _sensor_alarms(previous, rules)
        now = _sensor_alarms(current, rules)
        return [
            {"type": "sensor", "sensor": name, "message": reason}
            for name, reason in now.items()
            if name not in before
        ]
    if kind == "sel" and isinstance(current, list):
        seen = (
            {e.get("id") for e in previous if isinstance(e, dict)}
            if isinstance(previous, list)
            else set()
        )
        first_poll = previous is None
        return [
            {"type": "sel", "entry": e, "message": str(e.get("message", ""))}
            for e in current
            if isinstance(e, dict)
            and e.get("id") not in seen
            and not first_poll  # what was logged before polling began is history, not news
            and _sel_matches(e, rules)
        ]
    return []
