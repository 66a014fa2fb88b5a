"""Shared builders for discovery unit tests."""

from __future__ import annotations

import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hwfleet.discovery import DeviceMetadata


def make_meta(index: int = 1, **changes: object) -> DeviceMetadata:
    address = f"127.1.0.{index}"
    fields: dict[str, object] = {
        "uuid": str(uuid.UUID(int=index)),
        "name": f"rack-{index}",
        "serial": 1000 + index,
        "model_id": "x86-burnin",
        "version": "0.1.0",
        "ipaddr": address,
        "endpoint": (address, 12345),
    }
    fields.update(changes)
    return DeviceMetadata(**fields)  # type: ignore[arg-type]


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()
