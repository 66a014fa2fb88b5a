"""Operating the running controller over the bus, without a restart.

``live_config``: settings read and changed over the bus (``configuration``
methods), persisted in the store and applied at once; ``log_shipping``: the
controller's own log records published on the ``logging`` exchange by seed
level, so an operator watches every replica from one queue.
"""

from hwfleet.controller.ops import log_shipping
from hwfleet.controller.ops.live_config import LiveConfig, default_settings

__all__ = ["LiveConfig", "default_settings", "log_shipping"]
