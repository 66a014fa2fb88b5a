"""The store: the database is the source of truth (DESIGN §2).

SQLite in the data dir by default, PostgreSQL by URL; migrated to the newest
schema when opened. Work happens inside ``async with store.tx() as tx:`` through
``tx.devices``, ``tx.tasks``, ``tx.events``, ``tx.config``, ``tx.scans``,
``tx.outbox``, ``tx.keys``, ``tx.tokens`` and ``tx.discovered``; results come
back as frozen msgspec records.
"""

from hwfleet.errors import StoreError
from hwfleet.store import graph_tables as _graph_tables  # noqa: F401 - its tables join the metadata
from hwfleet.store import groups as _groups  # noqa: F401 - its table joins the metadata
from hwfleet.store import retention as _retention  # noqa: F401 - its indexes, likewise
from hwfleet.store import web_sessions as _web_sessions  # noqa: F401 - its table, likewise
from hwfleet.store.database import Store, open_store
from hwfleet.store.errors import StoreUnavailableError
from hwfleet.store.records import (
    DeviceRecord,
    DiscoveredRecord,
    EventRecord,
    KeyRecord,
    OutboxRecord,
    RunningScan,
    ScanRecord,
    ScanResultRecord,
    TaskRecord,
)
from hwfleet.store.scans import ScanResultRow
from hwfleet.store.tx import Tx

# --- oob --- BMC and poller tables join the shared metadata (docs/oob.md).
from hwfleet.store import bmcs as _bmcs, pollers as _pollers  # noqa: F401  isort: skip

__all__ = [
    "DeviceRecord",
    "DiscoveredRecord",
    "EventRecord",
    "KeyRecord",
    "OutboxRecord",
    "RunningScan",
    "ScanRecord",
    "ScanResultRecord",
    "ScanResultRow",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TaskRecord",
    "Tx",
    "open_store",
]
