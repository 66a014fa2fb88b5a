"""hwfleet: a control plane for fleets of physical machines.

A controller and a small agent on every device discover, enroll, inventory,
burn-in scan, decommission and re-image machines, over RabbitMQ or a direct
TLS stream. See DESIGN.md for the architecture.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
