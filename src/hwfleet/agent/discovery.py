"""The agent's discovery metadata (seed 004) and its responder's signing key."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hwfleet.discovery import DeviceMetadata

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from hwfleet.agent.runtime import AgentRuntime
    from hwfleet.discovery import DiscoveryResponder


def metadata_for(runtime: AgentRuntime, ipaddr: str, port: int) -> DeviceMetadata:
    """What a discovery reply says about this device right now."""
    info = runtime.info
    return runtime.status.apply(
        DeviceMetadata(
            uuid=info.uuid,
            name=info.name,
            serial=info.serial,  # keeps its JSON type, as everywhere else (1001 stays 1001)
            model_id=info.model_id,
            version=info.version,
            ipaddr=ipaddr,
            endpoint=(ipaddr, port),
        )
    )


class LazySigningKey:
    """Stands in for the device key and loads it on first use.

    Loading the key imports ``cryptography`` (about 12 MB): an agent that nobody
    queries never pays for it, so an idle agent stays inside its memory budget.
    """

    def __init__(self, key_path: Path) -> None:
        self._path = key_path
        self._key: Ed25519PrivateKey | None = None

    def _load(self) -> Ed25519PrivateKey:
        if self._key is None:
            key = load_signing_key(self._path)
            if key is None:
                raise ValueError(f"{self._path} is not an Ed25519 key; discovery cannot sign")
            self._key = key
        return self._key

    def sign(self, data: bytes) -> bytes:
        return self._load().sign(data)

    def public_key(self) -> Ed25519PublicKey:
        return self._load().public_key()


def load_signing_key(key_path: Path) -> Ed25519PrivateKey | None:
    """The device key, when it is Ed25519 (discovery signs with Ed25519 only)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(key_path.read_bytes(), password=None)
    return key if isinstance(key, Ed25519PrivateKey) else None


def local_ip_towards(host: str) -> str:
    """The address this machine uses to reach ``host`` (a UDP connect sends nothing)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


async def start_responder(
    runtime: AgentRuntime,
    *,
    ipaddr: str,
    port: int,
    group: str,
    interface: str,
    key_path: Path | None,
) -> DiscoveryResponder:
    """The agent's discovery responder; signs once the device key is enrolled."""
    from typing import cast

    from hwfleet.discovery import DiscoveryResponder

    responder = DiscoveryResponder(
        lambda: metadata_for(runtime, ipaddr, port),
        bind="0.0.0.0",
        port=port,
        group=group or None,
        interface=interface or None,
    )
    if key_path is not None:
        responder.signing_key = cast("Ed25519PrivateKey", LazySigningKey(key_path))
    await responder.start()
    return responder
