"""Processors from ``/proc/cpuinfo``: model, logical count, cores, sockets, MHz, flags."""

from __future__ import annotations

import os
from pathlib import Path

from hwfleet.agent.hardware._sysfs import read_int, read_str, under
from hwfleet.protocol.inventory import Cpu

#: Keys naming the model, by architecture: x86, then arm/ppc, then mips/s390.
_MODEL_KEYS = ("model name", "Processor", "cpu model", "cpu")
_FLAG_KEYS = ("flags", "Features")


def get_cpu(root: Path | str = "/") -> Cpu:
    """One summary for all processors (IPA's shape)."""
    text = read_str(under(root, "/proc/cpuinfo")) or ""
    first: dict[str, str] = {}
    count = 0
    cores: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    for block in text.split("\n\n"):
        fields = _fields(block)
        if "processor" not in fields:
            # ARM puts the model in a trailing block without a processor number.
            for key in _MODEL_KEYS:
                if key in fields and key not in first:
                    first[key] = fields[key]
            continue
        if count == 0:
            first.update(fields)
        count += 1
        socket_id = fields.get("physical id", "0")
        sockets.add(socket_id)
        cores.add((socket_id, fields.get("core id", fields["processor"])))
    if count == 0:
        count = os.cpu_count() or 0
    model = next((first[key] for key in _MODEL_KEYS if first.get(key)), "")
    flags = next((first[key].split() for key in _FLAG_KEYS if key in first), [])
    return Cpu(
        model=model,
        architecture=os.uname().machine,
        count=count,
        cores=len(cores) or count,
        sockets=len(sockets) or 1,
        frequency_mhz=_frequency(root, first),
        flags=flags,
    )


def _fields(block: str) -> dict[str, str]:
    fields = {}
    for line in block.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _frequency(root: Path | str, first: dict[str, str]) -> float | None:
    # The rated maximum is stable; "cpu MHz" is whatever the core runs at this instant.
    max_khz = read_int(under(root, "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"))
    if max_khz:
        return max_khz / 1000.0
    for key in ("cpu MHz", "clock"):
        text = first.get(key, "").removesuffix("MHz").strip()
        try:
            return float(text)
        except ValueError:
            continue
    return None
