"""Device network settings (seed 004): validation, plans for nmcli or iproute2, Wi-Fi scans.

:mod:`.model` checks and redacts; :mod:`.plans` turns settings into files and
argv lists without touching anything; :mod:`.apply` runs a plan on a real
device; :mod:`.wifi` builds and parses scans.
"""

from hwfleet.agent.netconfig.model import (
    MASKED,
    NetConfigError,
    NetworkParams,
    NetworkSettings,
    from_record,
    record,
    redacted,
    validate,
)

__all__ = [
    "MASKED",
    "NetConfigError",
    "NetworkParams",
    "NetworkSettings",
    "from_record",
    "record",
    "redacted",
    "validate",
]
