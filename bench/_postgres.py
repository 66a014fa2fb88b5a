"""The tests' temporary PostgreSQL database (tests/postgres.py), for benchmarks run as scripts.

A benchmark runs as ``python bench/NAME.py`` with only ``bench/`` on its path; the
repository root is added so that both use the one helper.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.postgres import create_database, drop_database

__all__ = ["create_database", "drop_database"]
