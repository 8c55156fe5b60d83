"""Tests wait for events, never for a fixed time: the machine they run on is shared and its speed
varies tenfold between runs."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(condition: Callable[[], bool], timeout: float = 20.0, every: float = 0.05) -> bool:
    """Whether ``condition()`` came true within ``timeout`` seconds, asked every ``every``.

    ``condition`` may raise (an AssertionError that a process died, say) to stop early."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
