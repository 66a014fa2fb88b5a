"""Open-file limit: every agent link is a descriptor, and 10,000 devices exceed a default 1,024.

The controller raises its soft ``RLIMIT_NOFILE`` to the hard limit at start
(allowed without privileges), so a reconnect storm is never refused for lack
of descriptors, and logs the limit it runs with.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def raise_open_file_limit() -> int:
    """Raise the soft limit to the hard one; the soft limit now in force (-1: unlimited)."""
    try:
        import resource
    except ImportError:  # not a POSIX system: nothing to raise
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    log.debug("open-file limit %s: at most about that many agent links", soft)
    return soft
