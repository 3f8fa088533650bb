"""Waiting on events, not on time.

A test waits for the thing it needs (a log line, a status, a count) by polling it; the
timeout is only a hang guard, far above any normal duration, so a slow or loaded machine
changes how long a test takes, never its verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable

HANG_GUARD = 120.0  # seconds: no wait in the suite should come near this


def wait_until(condition: Callable[[], object], what: str, timeout: float = HANG_GUARD, poll: float = 0.02) -> None:
    """Return as soon as `condition()` is true; fail naming `what` after `timeout` seconds."""
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, f"{what}: not seen within {timeout:.0f} s (a hang guard)"
        time.sleep(poll)
