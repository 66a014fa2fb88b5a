"""Full sysfs inventory of this machine: how long the agent takes, and what it found.

Measures, in fresh subprocesses so nothing is cached in Python: the import of
the hardware layer, the first (cold) inventory and the median of repeated
(warm) inventories. When ``lshw`` is installed it is timed in the same run and
the ratio printed; otherwise its earlier figure is shown as a reference.

References (measured on this kind of machine): ironic-python-agent 13's
``list_hardware_info`` 0.33-0.40 s after a 0.45 s import; ``lshw -json`` 0.20 s.
Goal: <= 0.05 s, with at least IPA's fields for NICs, CPU, memory and disks,
plus the PCI list.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time

IPA_LIST_HARDWARE_INFO_S = (0.33, 0.40)
LSHW_JSON_S = 0.20
GOAL_S = 0.05

#: Runs in a child interpreter: a fresh process is what an agent answering `inventory` pays
#: for the first time, and it keeps this script's imports out of the figure.
CHILD = """
import json, statistics, sys, time
t0 = time.perf_counter()
from hwfleet.agent.hardware import default_dispatcher
import msgspec
t1 = time.perf_counter()
dispatcher = default_dispatcher()
inv = dispatcher.inventory()
t2 = time.perf_counter()
warm = []
for _ in range(int(sys.argv[1])):
    s = time.perf_counter()
    dispatcher.inventory()
    warm.append(time.perf_counter() - s)
print(json.dumps({
    "import_s": t1 - t0, "cold_s": t2 - t1, "warm_s": statistics.median(warm),
    "inventory": msgspec.to_builtins(inv),
}))
"""


def measure(rounds: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(rounds)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


def time_lshw(rounds: int) -> float | None:
    lshw = shutil.which("lshw")
    if lshw is None:
        return None
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run([lshw, "-json", "-quiet"], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def describe(inv: dict[str, object]) -> str:
    nics = inv.get("interfaces") or []
    disks = inv.get("disks") or []
    pci = inv.get("pci") or []
    cpu = inv.get("cpu") or {}
    memory = inv.get("memory") or {}
    assert isinstance(nics, list) and isinstance(disks, list) and isinstance(pci, list)
    assert isinstance(cpu, dict) and isinstance(memory, dict)
    return (
        f"{len(pci)} PCI devices, {len(nics)} NICs, {len(disks)} disks, "
        f"CPU {cpu.get('model') or '?'} x{cpu.get('count') or '?'}, "
        f"memory {int(memory.get('total_bytes') or 0) / 2**30:.1f} GiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=5, help="fresh processes to measure")
    parser.add_argument("--rounds", type=int, default=20, help="warm inventories per process")
    parser.add_argument("--show", action="store_true", help="print the inventory as JSON")
    args = parser.parse_args()

    runs = [measure(args.rounds) for _ in range(args.processes)]
    imports = statistics.median(float(r["import_s"]) for r in runs)  # type: ignore[arg-type]
    cold = statistics.median(float(r["cold_s"]) for r in runs)  # type: ignore[arg-type]
    warm = statistics.median(float(r["warm_s"]) for r in runs)  # type: ignore[arg-type]
    inventory = runs[-1]["inventory"]
    assert isinstance(inventory, dict)
    if args.show:
        print(json.dumps(inventory, indent=2))
    print(f"found: {describe(inventory)}")
    print(
        f"hwfleet sysfs inventory: import {imports * 1000:.1f} ms, first call {cold * 1000:.1f} ms,"
        f" repeated {warm * 1000:.1f} ms (median of {args.processes} processes); "
        f"goal <= {GOAL_S * 1000:.0f} ms: {'met' if cold <= GOAL_S else 'NOT met'}"
    )
    low, high = IPA_LIST_HARDWARE_INFO_S
    print(
        f"  vs ironic-python-agent list_hardware_info {low:.2f}-{high:.2f} s (reference): "
        f"{low / cold:.0f}-{high / cold:.0f}x faster"
    )
    lshw = time_lshw(3)
    if lshw is None:
        print(
            f"  vs lshw -json {LSHW_JSON_S:.2f} s (reference; lshw is not installed here): "
            f"{LSHW_JSON_S / cold:.0f}x faster"
        )
    else:
        print(f"  vs lshw -json {lshw:.3f} s measured now: {lshw / cold:.0f}x faster")


if __name__ == "__main__":
    main()
