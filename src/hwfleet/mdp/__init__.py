"""Machine Diagnostics Protocol (seed 002, DESIGN §13): UDP diagnostics with per-machine keys.

:mod:`.wire` encodes and authenticates datagrams, :mod:`.endpoint` is the agent's UDP
endpoint, :mod:`.operations` the plugin operations it runs, :mod:`.keys` the machine key
(agent side) and the controller's ``.known_machines`` mirror, :mod:`.client` the caller
side, :mod:`.reports` the periodic reports to the monitoring host. Nothing here is
imported by an agent unless its diagnostics endpoint is on.
"""

from __future__ import annotations

#: The seed's port.
DEFAULT_PORT = 12345
