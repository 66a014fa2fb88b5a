"""A RabbitMQ vhost that exists only for one benchmark run (needs ``rabbitmqctl``).

The same helper as tests/rabbit.py: benchmarks run as plain scripts and do not import tests.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit


@contextmanager
def temporary_vhost(base_url: str, prefix: str) -> Iterator[str | None]:
    """Yield ``base_url`` moved to a new vhost ``<prefix>-<random>``, deleted afterwards.

    Yields None when ``rabbitmqctl`` is not on this machine (a remote broker): the caller
    decides whether to share ``base_url`` instead.
    """
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        yield None
        return
    parts = urlsplit(base_url)
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"

    def rabbitmqctl(*args: str, check: bool = True) -> None:
        subprocess.run([ctl, *args], check=check, capture_output=True, timeout=60)

    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, parts.username or "guest", ".*", ".*", ".*")
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + vhost, "", ""))
    finally:
        rabbitmqctl("delete_vhost", vhost, check=False)
