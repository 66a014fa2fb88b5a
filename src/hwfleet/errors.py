"""The root of hwfleet's exceptions: catch :class:`HwfleetError` to catch any of ours.

A small tree, one branch per kind of failure an operator (or a caller) handles alike::

    HwfleetError
    ├── ConfigError       a setting, profile or request body is wrong (the message names it)
    ├── ProtocolError     a peer broke the wire format or answered with an error
    ├── BusError          the message bus: unreachable, a refused message, an RPC failure
    ├── StoreError        the database (or the agent's state file) cannot do what was asked
    ├── TrustError        identity, keys, certificates, passwords, tokens
    ├── DeviceError       the device itself: hardware, its network, a task it runs
    ├── IntegrationError  an external system (the MES) failed or answered nonsense
    └── ConflictError     valid, but the current state forbids it now

Each module's own exceptions derive from one branch (and keep the builtin base they had,
such as ``ValueError``, so existing ``except`` clauses still catch them).
"""

from __future__ import annotations


class HwfleetError(Exception):
    """Every exception hwfleet defines derives from this."""


class CliError(HwfleetError):
    """A failure to show the operator as one line that names the fix (exit code 1)."""


class ConfigError(HwfleetError):
    """A setting, profile or request is wrong; the message names it and the fix."""


class ProtocolError(HwfleetError):
    """A peer broke the wire format, or answered a call with an error."""


class BusError(HwfleetError):
    """The message bus failed: unreachable, a message refused, an RPC without an answer."""


class StoreError(HwfleetError):
    """Something the store cannot do; the message says what and why."""


class TrustError(HwfleetError):
    """Identity and trust: a key, certificate, token, password or signature was refused."""


class DeviceError(HwfleetError):
    """The device itself failed: its hardware, its network, a task it runs."""


class IntegrationError(HwfleetError):
    """An external system (the MES) failed or answered something we cannot use."""


class ConflictError(HwfleetError):
    """The request is valid but the current state forbids it (another run is in progress)."""


class ScanRunningError(ConflictError):
    """A scan is running already: a second one would post to the MES beside it."""

    def __init__(self, operationid: int) -> None:
        super().__init__(
            f"scan {operationid} is still running: follow it with "
            f"`hwfleet scan show {operationid} --wait`, and start a new one when it ends"
        )
        self.operationid = operationid
