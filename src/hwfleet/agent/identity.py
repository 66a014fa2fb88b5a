"""Who this agent is: a uuid kept in the data dir, and what the hardware says about it."""

from __future__ import annotations

import json
import os
import socket
import uuid as uuidlib
from pathlib import Path

import msgspec

from hwfleet import __version__
from hwfleet.protocol.inventory import Inventory
from hwfleet.types import Serial


class DeviceInfo(msgspec.Struct, kw_only=True):
    """The handshake fields (seed 004 metadata) that do not change while running."""

    uuid: str
    serial: Serial
    name: str
    model_id: str
    version: str = __version__


def load_or_create_uuid(data_dir: str | os.PathLike[str]) -> str:
    """The agent's uuid, generated once and kept in ``<data-dir>/agent.json``."""
    path = Path(data_dir) / "agent.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["uuid"]
        return str(uuidlib.UUID(value))
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is damaged ({exc}); remove it to re-create the identity"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    value = str(uuidlib.uuid4())
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"uuid": value}) + "\n", encoding="utf-8")
    tmp.replace(path)
    return value


def describe_machine(device_uuid: str, inventory: Inventory) -> DeviceInfo:
    """Serial and model from DMI when the firmware provides them, else the host name."""
    dmi = inventory.dmi
    hostname = inventory.hostname or socket.gethostname()
    serial = (dmi.product_serial if dmi else None) or hostname
    model = (dmi.product_name if dmi else None) or "generic"
    return DeviceInfo(uuid=device_uuid, serial=serial, name=hostname, model_id=model)
