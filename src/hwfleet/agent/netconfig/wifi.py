"""Wi-Fi scanning (seed 004 ``get_wifi_list``): the commands to run and the parsers of their output.

NetworkManager answers ``nmcli -t -f SSID,SIGNAL,SECURITY dev wifi list``
(signal in percent); without it, ``iw dev IF scan`` (signal in dBm, converted
with NetworkManager's own formula so both paths report the same scale). The
parsers are pure so they can be tested on captured output, with no radio.
"""

from __future__ import annotations

import re
from typing import Any

_BSS = re.compile(r"^BSS ([0-9a-fA-F:]{17})")


def nmcli_scan_argv(interface: str | None) -> list[str]:
    argv = ["nmcli", "-t", "-f", "SSID,SIGNAL,SECURITY", "dev", "wifi", "list"]
    if interface:
        argv += ["ifname", interface]
    return argv


def iw_scan_argv(interface: str) -> list[str]:
    return ["iw", "dev", interface, "scan"]


def split_nmcli_terse(line: str) -> list[str]:
    """One ``nmcli -t`` line into its fields, unescaping ``\\:`` and ``\\\\``."""
    fields, current, chars = [], [], iter(line)
    for char in chars:
        if char == "\\":
            current.append(next(chars, ""))
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def parse_nmcli(output: str) -> list[dict[str, Any]]:
    networks = []
    for line in output.splitlines():
        if not line.strip():
            continue
        fields = split_nmcli_terse(line)
        if len(fields) < 3:
            continue
        ssid, signal, security = fields[0], fields[1], fields[2]
        networks.append(
            {
                "ssid": ssid,
                "signal": int(signal) if signal.isdigit() else 0,
                "security": "" if security in ("", "--") else security,
            }
        )
    return merge(networks)


def dbm_to_percent(dbm: float) -> int:
    """NetworkManager's mapping: -100 dBm → 0 %, -50 dBm and above → 100 %."""
    return max(0, min(100, round(2 * (dbm + 100))))


def parse_iw(output: str) -> list[dict[str, Any]]:
    networks: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    flags: set[str] = set()

    def finish() -> None:
        if current is not None:
            current["security"] = _iw_security(flags)
            networks.append(current)

    for raw in output.splitlines():
        line = raw.strip()
        if _BSS.match(raw):
            finish()
            current, flags = {"ssid": "", "signal": 0}, set()
        elif current is None:
            continue
        elif line.startswith("SSID:"):
            current["ssid"] = line[len("SSID:") :].strip()
        elif line.startswith("signal:"):
            try:
                dbm = float(line.split()[1])
            except (IndexError, ValueError):
                continue
            current["signal"] = dbm_to_percent(dbm)
            current["dbm"] = dbm
        elif line.startswith(("RSN:", "WPA:")):
            flags.add(line.split(":", 1)[0])
        elif line.startswith("capability:") and "Privacy" in line.split():
            flags.add("Privacy")
    finish()
    return merge(networks)


def _iw_security(flags: set[str]) -> str:
    found = [name for flag, name in (("WPA", "WPA1"), ("RSN", "WPA2")) if flag in flags]
    if found:
        return " ".join(found)
    return "WEP" if "Privacy" in flags else ""


def merge(networks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (ssid, security), the strongest signal first; hidden networks kept once."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for network in networks:
        key = (network["ssid"], network["security"])
        if key not in best or network["signal"] > best[key]["signal"]:
            best[key] = network
    return sorted(best.values(), key=lambda n: (-n["signal"], n["ssid"]))
