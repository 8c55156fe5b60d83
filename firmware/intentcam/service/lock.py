"""One daemon per state dir: an exclusive ``flock`` on ``<state_dir>/daemon.lock``.

Two daemons on one state dir would share a spool and an artifact store. The lock also tells
``intentcam ota`` whether a daemon is running: if so, requests go through its inbox and it
hot-swaps; if not, the command installs for the next start itself.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from intentcam.errors import UserError

log = logging.getLogger(__name__)

LOCK_FILE = "daemon.lock"


@dataclass
class DaemonLock:
    path: Path
    fd: int | None

    @classmethod
    def acquire(cls, state_dir: Path) -> DaemonLock:
        """Take the lock or raise a one-line :class:`UserError` naming the other daemon."""
        path = state_dir / LOCK_FILE
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            # A read-only or broken state filesystem: run without the lock (degraded elsewhere)
            # rather than not at all.
            log.error("cannot take %s (%s); running without the one-daemon lock", path, exc)
            return cls(path, None)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise UserError(
                f"another intentcam daemon (pid {other}) runs with state dir {state_dir}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def daemon_running(state_dir: Path) -> bool:
    """Whether a daemon holds the lock of ``state_dir`` right now (``False`` when the lock
    file cannot be read at all: a broken state filesystem)."""
    try:
        fd = os.open(state_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
