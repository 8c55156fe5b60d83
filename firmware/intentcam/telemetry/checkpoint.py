"""The open window's checkpoint: what a crash would otherwise lose.

Every ``analytics.checkpoint_s`` the frame loop writes the open window's counts and sessions (a
copy, marked ``partial``) to ``<state_dir>/window-checkpoint.json``, atomically. A clean stop
closes the window itself and removes the file. A start that finds the file knows the last run did
not stop cleanly, and publishes those records marked ``recovered`` through the spool, so a crash,
SIGKILL, watchdog abort or power cut loses at most one checkpoint interval.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from intentcam.durable import RewrittenFile
from intentcam.records import Record, encode

log = logging.getLogger(__name__)
FILE_NAME = "window-checkpoint.json"


class WindowCheckpoint:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self._file = RewrittenFile(self.path, "the window checkpoint", log)

    def save(self, records: list[Record]) -> None:
        """Replace the checkpoint; a storage fault is logged once and retried next time."""
        self._file.write(encode({"records": records}).encode("utf-8"))

    def take(self) -> list[Record]:
        """The records a run that did not stop cleanly left, marked ``recovered``; the file goes."""
        if not self.path.exists():
            return []
        try:
            records = json.loads(self.path.read_text(encoding="utf-8"))["records"]
            assert isinstance(records, list)
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
            log.error("window checkpoint %s unreadable (%s); ignoring it", self.path, exc)
            records = []
        self.clear()
        for record in records:
            record["recovered"] = True
        return [
            r for r in records if isinstance(r, dict) and r.get("type") in ("counts", "sessions")
        ]

    def clear(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("cannot remove the window checkpoint %s: %s", self.path, exc)
