"""Writing small state files so that a crash or power cut leaves the old or the new content.

Used by everything that keeps state in ``paths.state_dir``: live zones, the OTA state and
status, the window checkpoint, the spool's seq high-water mark, the alert cooldowns.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temporary file, fsync, rename, fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


class RewrittenFile:
    """A state file rewritten as the daemon runs (the window checkpoint, the alert cooldowns),
    where a failed write must not stop it: the first fault of a spell is logged as an error
    naming ``what`` the file keeps, the next are not until a write succeeds again (a full or
    read-only card would otherwise fill the log every few seconds). ``log`` is the caller's
    logger, so the line names the module that lost its state."""

    def __init__(self, path: Path, what: str, log: logging.Logger) -> None:
        self.path = path
        self.what = what
        self._log = log
        self._failing = False

    def write(self, data: bytes) -> None:
        """Replace the file with ``data`` (:func:`atomic_write`); a fault is logged, not raised."""
        try:
            atomic_write(self.path, data)
            self._failing = False
        except OSError as exc:
            if not self._failing:
                self._log.error("cannot keep %s in %s: %s", self.what, self.path, exc)
            self._failing = True
