"""``Tx``: the repositories of one transaction, as ``tx.devices``, ``tx.scans``, …"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from hwfleet.store.config import ConfigRepository
from hwfleet.store.devices import DeviceRepository
from hwfleet.store.discovered import DiscoveredRepository
from hwfleet.store.events import EventRepository
from hwfleet.store.images import ImageRepository
from hwfleet.store.keys import KeyRepository
from hwfleet.store.outbox import OutboxRepository
from hwfleet.store.scans import ScanRepository
from hwfleet.store.tasks import TaskRepository
from hwfleet.store.tokens import TokenRepository


class Tx:
    """Everything here shares one connection and commits (or rolls back) together."""

    __slots__ = (
        "config",
        "conn",
        "devices",
        "discovered",
        "events",
        "images",
        "keys",
        "outbox",
        "scans",
        "tasks",
        "tokens",
    )

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.devices = DeviceRepository(conn)
        self.tasks = TaskRepository(conn)
        self.events = EventRepository(conn)
        self.config = ConfigRepository(conn)
        self.scans = ScanRepository(conn)
        self.outbox = OutboxRepository(conn)
        self.keys = KeyRepository(conn)
        self.tokens = TokenRepository(conn)
        self.discovered = DiscoveredRepository(conn)
        self.images = ImageRepository(conn)
