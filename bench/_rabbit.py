"""The tests' temporary RabbitMQ vhost (tests/rabbit.py), for benchmarks run as plain scripts.

A benchmark runs as ``python bench/NAME.py`` with only ``bench/`` on its path; the
repository root is added so that both use the one helper.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.rabbit import temporary_vhost

__all__ = ["temporary_vhost"]
