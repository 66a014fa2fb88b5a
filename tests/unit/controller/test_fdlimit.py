"""The controller runs with its soft open-file limit raised to the hard limit."""

from __future__ import annotations

import resource

from hwfleet.controller.fdlimit import raise_open_file_limit


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lowered = min(soft, hard, 256)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
        assert raise_open_file_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
