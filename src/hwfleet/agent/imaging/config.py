"""Where the agent's imaging settings come from: ``--image-cache``, ``--cache-budget``, the server.

Everything is read from the agent's settings object (``runtime.settings``); a
runtime built without one (a test, an embedded agent) uses the defaults under
its data dir.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hwfleet.agent.imaging.source import ImageClient, ImageSourceError
from hwfleet.settings import AgentSettings, default_data_dir
from hwfleet.types import parse_host_port

if TYPE_CHECKING:
    from hwfleet.agent.runtime import AgentRuntime

#: The image server listens beside the gateway: 7800 → 7802.
IMAGE_PORT_OFFSET = 2
#: With no ``--cache-budget`` the cache may fill the disk but this much.
RESERVE = 1024**3
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """``20G``, ``500MiB``, ``1.5t``, ``4096`` → bytes (powers of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a size (like 500M, 20G or 1T)")
    return int(float(match[1]) * _UNITS[match[2].lower()])


@dataclass(frozen=True)
class ImagingConfig:
    cache_dir: Path
    budget: int | None  # None: free space minus RESERVE
    server: str
    data_dir: Path
    insecure: bool

    @classmethod
    def of(cls, rt: AgentRuntime) -> ImagingConfig:
        settings = rt.settings or AgentSettings(
            data_dir=os.fspath(rt.local.data_dir or default_data_dir())
        )
        data_dir = Path(settings.data_dir)
        host, port = parse_host_port(settings.controller)
        return cls(
            cache_dir=Path(settings.image_cache or data_dir / "image-cache"),
            budget=parse_size(settings.cache_budget) if settings.cache_budget else None,
            server=settings.image_server or f"{host}:{port + IMAGE_PORT_OFFSET}",
            data_dir=data_dir,
            insecure=settings.insecure,
        )

    def budget_now(self, cached: int) -> int:
        """Bytes the cache may hold in all (``cached``: what valid entries hold now)."""
        if self.budget is not None:
            return self.budget
        self.cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return max(0, shutil.disk_usage(self.cache_dir).free - RESERVE + cached)

    def client(self, device_uuid: str) -> ImageClient:
        """A client of the controller's image server, with this device's certificate."""
        if self.insecure:
            raise ImageSourceError("images are served over mutual TLS only; --insecure has none")
        from hwfleet.trust.identity import AgentIdentity
        from hwfleet.trust.tls import enrolled_context

        host, port = parse_host_port(self.server)
        try:
            context = enrolled_context(AgentIdentity.load_or_create(self.data_dir, device_uuid))
        except (OSError, ValueError) as exc:
            raise ImageSourceError(f"cannot download images: {exc}") from None
        return ImageClient(host, port, context)
